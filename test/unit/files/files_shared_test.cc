// A two-process tree whose pipe has one end in each process and whose processes share one file
// description (inherited across fork): prepare_shared() creates them in criu, each restored
// process installs its own fds.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"
#include "images/image_io.h"
#include "proto/files.pb.h"

using namespace criu;
using namespace criu::test;

namespace {

bool null_stdio_only() {
    int null = open("/dev/null", O_RDWR);
    return null >= 0 && dup2(null, 0) >= 0 && dup2(null, 1) >= 0 && dup2(null, 2) >= 0 &&
           syscall(SYS_close_range, 3, kReadyFd - 1, 0) == 0 && syscall(SYS_close_range, kReadyFd + 1, ~0u, 0) == 0;
}

std::map<int, images::FdEntry> fdinfo(int dirfd, pid_t pid) {
    auto r = ImageReader::open_at(dirfd, image_file_name(ImageType::Fdinfo, pid), ImageType::Fdinfo);
    REQUIRE(r);
    auto all = r->read_all<images::FdEntry>();
    REQUIRE(all);
    std::map<int, images::FdEntry> out;
    for (auto& f : *all)
        out[f.fd()] = f;
    return out;
}

std::string read_exactly(int fd, size_t n) {
    std::string out;
    while (out.size() < n) {
        std::string chunk = read_some(fd, n - out.size());
        if (chunk.empty())
            break;
        out += chunk;
    }
    return out;
}

}  // namespace

TEST_CASE("a pipe between parent and child and an inherited description are restored across the tree") {
    TempDir images, work;
    std::ofstream(work / "shared.txt") << "0123456789";

    // Dumped tree: parent has the write end at fd 10, the child the read end at fd 10, both
    // share one description of shared.txt (offset 4) at fd 11.
    pid_t parent = spawn_ready_child([&] {
        int p[2];
        if (!null_stdio_only())
            return false;
        int f = open((work / "shared.txt").c_str(), O_RDONLY);
        if (pipe(p) != 0 || !write_all(p[1], "queued") || f < 0 || lseek(f, 4, SEEK_SET) != 4 ||
            !place(f, 11))
            return false;
        pid_t c = fork();
        if (c == 0) {
            close(p[1]);
            place(p[0], 10);
            close(kReadyFd);
            for (;;)
                pause();
        }
        close(p[0]);
        std::ofstream(work / "child.pid") << c;
        return place(p[1], 10);
    });
    REQUIRE(parent > 0);
    pid_t child = 0;
    std::ifstream(work / "child.pid") >> child;
    REQUIRE(child > 0);

    Options opts;
    Log log(1);
    FilesDumper dumper;
    auto a = dumper.dump_process_fds(parent, opts, log, images.fd());
    auto b = dumper.dump_process_fds(child, opts, log, images.fd());
    kill(child, SIGKILL);
    kill_child(parent);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(dumper.finish(images.fd()));
    auto pf = fdinfo(images.fd(), parent), cf = fdinfo(images.fd(), child);
    CHECK(pf[11].file_id() == cf[11].file_id());
    CHECK(pf[10].file_id() != cf[10].file_id());
    CHECK(pf[0].file_id() == cf[0].file_id());

    auto fr = FilesRestorer::load(images.fd(), {parent, child}, log);
    REQUIRE(fr);
    CHECK(fr->max_target_fd() == 11);

    SECTION("without prepare_shared the shared objects are refused by name") {
        std::string out = run_checked_child([&] {
            auto r = fr->restore_process_fds(parent, opts, log);
            if (r)
                report("restore succeeded without prepare_shared");
            else if (r.error().str().find(fmt::format("pid {} fd 0: character device", parent)) == std::string::npos ||
                     r.error().str().find("prepare_shared") == std::string::npos)
                report(r.error().str());
            return 0;
        });
        CHECK(out == "");
    }

    SECTION("with prepare_shared each process gets its end and the common offset") {
        auto prep = fr->prepare_shared(log);
        INFO((prep ? "" : prep.error().str()));
        REQUIRE(prep);
        std::string out = run_checked_child([&] {
            // As the tree builder does it: fork the children first, then restore the fds.
            pid_t r2 = fork();
            if (r2 == 0) {
                auto r = fr->restore_process_fds(child, opts, log);
                if (!r) {
                    report("child: " + r.error().str());
                    _exit(1);
                }
                std::string got = read_exactly(10, 11);
                if (got != "queuedhello")
                    report("child read \"" + got + "\"");
                if (lseek(11, 9, SEEK_SET) != 9)
                    report("child lseek");
                _exit(0);
            }
            auto r = fr->restore_process_fds(parent, opts, log);
            if (!r) {
                report("parent: " + r.error().str());
                return 1;
            }
            if (!write_all(10, "hello"))
                report("parent write");
            int status = 0;
            waitpid(r2, &status, 0);
            if (status != 0)
                report(fmt::format("child status {:#x}", status));
            // The child moved the shared offset.
            if (lseek(11, 0, SEEK_CUR) != 9)
                report(fmt::format("parent offset {}", lseek(11, 0, SEEK_CUR)));
            return 0;
        });
        CHECK(out == "");
    }
}
