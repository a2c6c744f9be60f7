// memfd: name, content (sparse), size, seals, mode and per-description flags and offsets; two
// descriptions and two processes on one memfd get one object; memfd_for() hands the restorer
// that same object for a mapping.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

constexpr off_t kTailAt = 1 << 20;  // a hole before it: the content file must stay sparse
const std::string kHead = "hello memfd", kTail = "tail";

std::string pread_str(int fd, size_t n, off_t at) {
    std::string s(n, '\0');
    ssize_t got = pread(fd, s.data(), n, at);
    s.resize(got > 0 ? size_t(got) : 0);
    return s;
}

std::string link_of(int fd) {
    char buf[256] = {};
    ssize_t n = readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, size_t(n)) : "";
}

ino_t ino_of(int fd) {
    struct stat st {};
    fstat(fd, &st);
    return st.st_ino;
}

}  // namespace

TEST_CASE("memfd: name, content, size, seals and descriptions survive dump and restore") {
    TempDir images;
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        int m = memfd_create("criu-test", MFD_ALLOW_SEALING);
        if (m < 0 || !place(m, 10) || !write_all(10, kHead) || pwrite(10, kTail.data(), kTail.size(), kTailAt) != 4 ||
            lseek(10, 3, SEEK_SET) != 3 || fchmod(10, 0640) != 0 || fcntl(10, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0)
            return false;
        // A second, read-only description of the same memfd.
        int ro = open("/proc/self/fd/10", O_RDONLY);
        if (ro < 0 || !place(ro, 11) || lseek(11, 5, SEEK_SET) != 5)
            return false;
        // Without MFD_ALLOW_SEALING: sealed against sealing.
        int plain = memfd_create("plain", MFD_CLOEXEC);
        return plain >= 0 && place(plain, 12, true) && write_all(12, "p");
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");

    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_memfd());
    const auto& m = files[10].memfd();
    CHECK(m.name() == "criu-test");
    CHECK(m.size() == uint64_t(kTailAt) + kTail.size());
    CHECK(m.seals() == (F_SEAL_GROW | F_SEAL_SHRINK));
    CHECK(m.mode() == 0640);
    CHECK(m.pos() == 3);
    CHECK(files[11].memfd().content_file() == m.content_file());  // one copy per memfd
    CHECK(files[11].id() != files[10].id());                       // two descriptions
    CHECK(files[12].memfd().seals() == F_SEAL_SEAL);
    struct stat st;
    REQUIRE(fstatat(images.fd(), m.content_file().c_str(), &st, 0) == 0);
    CHECK(st.st_size == kTailAt + 4);
    CHECK(st.st_blocks * 512 < kTailAt / 2);  // the hole was not written out

    std::string out = restore_and_check(images.fd(), pid, log, [] {
        expect(link_of(10) == "/memfd:criu-test (deleted)", "link " + link_of(10));
        expect(pread_str(10, kHead.size(), 0) == kHead, "head content");
        expect(pread_str(10, 4, kTailAt) == kTail, "tail content");
        expect(pread_str(10, 8, 4096) == std::string(8, '\0'), "the hole reads as zeros");
        struct stat st {};
        expect(fstat(10, &st) == 0 && st.st_size == kTailAt + 4 && (st.st_mode & 07777) == 0640,
               fmt::format("size {} mode {:o}", st.st_size, st.st_mode & 07777));
        expect(fcntl(10, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), fmt::format("seals {:#x}", fcntl(10, F_GET_SEALS)));
        expect(ftruncate(10, 10) != 0 && errno == EPERM, "F_SEAL_SHRINK must hold");
        expect(pwrite(10, "H", 1, 0) == 1, "no write seal: writes go through");
        expect(lseek(10, 0, SEEK_CUR) == 3, "offset of fd 10");
        expect((fcntl(10, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 10 read-write");

        expect(ino_of(11) == ino_of(10), "fds 10 and 11 are one memfd");
        expect(syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 10, 11) != 0, "fds 10 and 11 are two descriptions");
        expect((fcntl(11, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 11 read-only");
        expect(lseek(11, 0, SEEK_CUR) == 5, "offset of fd 11");
        expect(pread_str(11, 1, 0) == "H", "a write through fd 10 shows through fd 11");

        expect(fcntl(12, F_GET_SEALS) == F_SEAL_SEAL, "fd 12 cannot be sealed");
        expect(fcntl(12, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM, "F_SEAL_SEAL must hold");
        expect(fcntl(12, F_GETFD) == FD_CLOEXEC, "fd 12 close-on-exec");
        expect(pread_str(12, 1, 0) == "p", "fd 12 content");
    });
    CHECK(out == "");
}

TEST_CASE("memfd: one memfd in two processes is one object, which memfd_for() hands out too") {
    TempDir images, work;
    pid_t parent = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        int m = memfd_create("shared", 0);
        if (m < 0 || !place(m, 10) || !write_all(10, "shared!"))
            return false;
        pid_t c = fork();
        if (c == 0) {
            close(kReadyFd);
            for (;;)
                pause();
        }
        std::ofstream(work / "child.pid") << c;
        return true;
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
    auto pf = dumped_files(images.fd(), parent);
    REQUIRE(pf[10].has_memfd());
    uint64_t dev = pf[10].memfd().dev(), ino = pf[10].memfd().ino();

    auto fr = FilesRestorer::load(images.fd(), {parent, child}, log);
    INFO((fr ? "" : fr.error().str()));
    REQUIRE(fr);
    auto none = fr->memfd_for(dev, ino + 1, log);
    REQUIRE(none);
    CHECK_FALSE(*none);  // no fd of the dump on that one: the caller makes its own
    std::string out = run_checked_child([&] {
        // As the restorer would: the memfd for a mapping first, then the shared objects, then fork.
        auto mapped = fr->memfd_for(dev, ino, log);
        if (!mapped || !*mapped) {
            report("memfd_for: " + (mapped ? std::string("nothing") : mapped.error().str()));
            return 1;
        }
        int map_fd = mapped->get();
        if (map_fd <= fr->max_target_fd())
            report(fmt::format("memfd_for gave fd {}, not above the target fds", map_fd));
        void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
        if (p == MAP_FAILED) {
            report("mmap of the memfd_for fd");
            return 1;
        }
        if (auto prep = fr->prepare_shared(log); !prep) {
            report("prepare_shared: " + prep.error().str());
            return 1;
        }
        pid_t c = fork();
        if (c == 0) {
            if (auto r = fr->restore_process_fds(child, opts, log); !r) {
                report("child: " + r.error().str());
                _exit(1);
            }
            expect(ino_of(10) == ino_of(map_fd), "the child's fd 10 is the mapped memfd");
            expect(pwrite(10, "S", 1, 0) == 1, "child write");
            _exit(0);
        }
        if (auto r = fr->restore_process_fds(parent, opts, log); !r) {
            report("parent: " + r.error().str());
            return 1;
        }
        int status = 0;
        waitpid(c, &status, 0);
        expect(status == 0, fmt::format("child status {:#x}", status));
        expect(ino_of(10) == ino_of(map_fd), "the parent's fd 10 is the mapped memfd");
        // The child's write shows in the parent's fd and in the mapping.
        expect(pread_str(10, 7, 0) == "Shared!", "parent reads " + pread_str(10, 7, 0));
        expect(std::string(static_cast<char*>(p), 7) == "Shared!", "the mapping shows the child's write");
        return 0;
    });
    CHECK(out == "");
}
