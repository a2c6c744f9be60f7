// One process with every supported kind is dumped with FilesDumper, its images are checked, and
// a fresh child restores the fds with FilesRestorer and checks them from inside.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"
#include "images/image_io.h"
#include "proto/files.pb.h"

using namespace criu;
using namespace criu::test;

namespace {

// The dumped child's fds, above 0-2 (all /dev/null).
constexpr int kReg = 10, kRegDup = 11, kGhost = 12, kPipeRd = 13, kPipeWr = 14, kFifoRd = 15, kFifoWr = 16,
              kNull = 17, kLonelyRd = 18, kLonelyWr = 19;

bool close_all_but_ready() {
    return syscall(SYS_close_range, 3, kReadyFd - 1, 0) == 0 && syscall(SYS_close_range, kReadyFd + 1, ~0u, 0) == 0;
}

bool setup_all_kinds(const TempDir& work) {
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || !close_all_but_ready())
        return false;

    int reg = open((work / "reg.txt").c_str(), O_RDWR | O_APPEND);
    if (reg < 0 || lseek(reg, 5, SEEK_SET) != 5 || !place(reg, kReg) || dup2(kReg, kRegDup) < 0)
        return false;

    int ghost = open((work / "gone.txt").c_str(), O_RDWR | O_CREAT | O_EXCL, 0640);
    if (ghost < 0 || !write_all(ghost, "ghost content") || lseek(ghost, 3, SEEK_SET) != 3 ||
        unlink((work / "gone.txt").c_str()) != 0 || !place(ghost, kGhost))
        return false;

    int p[2];
    if (pipe(p) != 0 || !write_all(p[1], "pipe data") || !place(p[0], kPipeRd) || !place(p[1], kPipeWr, true))
        return false;

    int frd = open((work / "fifo").c_str(), O_RDONLY | O_NONBLOCK);
    int fwr = open((work / "fifo").c_str(), O_WRONLY);
    if (frd < 0 || fwr < 0 || !write_all(fwr, "fifo data") || !place(frd, kFifoRd) || !place(fwr, kFifoWr))
        return false;

    int n = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (n < 0 || !place(n, kNull, true))
        return false;

    // A read end whose write end is gone, and a write end whose read end is gone.
    if (pipe(p) != 0 || !write_all(p[1], "lonely") || close(p[1]) != 0 || !place(p[0], kLonelyRd))
        return false;
    if (pipe(p) != 0 || !write_all(p[1], "orphan") || close(p[0]) != 0 || !place(p[1], kLonelyWr))
        return false;
    return true;
}

void check(bool ok, const std::string& what) {
    if (!ok)
        report(what);
}

off_t pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

// Runs inside the restored child after restore_process_fds.
void check_restored(const TempDir& work) {
    for (int fd = 3; fd < kReg; ++fd)
        check(fcntl(fd, F_GETFD) < 0 && errno == EBADF, fmt::format("fd {} should be closed", fd));
    for (int fd = 0; fd <= 2; ++fd) {
        struct stat st;
        check(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), fmt::format("fd {} not /dev/null", fd));
    }

    check((fcntl(kReg, F_GETFL) & (O_ACCMODE | O_APPEND)) == (O_RDWR | O_APPEND), "reg flags");
    check(pos(kReg) == 5, fmt::format("reg pos {}", pos(kReg)));
    check(syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, kReg, kRegDup) == 0, "dup'd fds are one description");
    check(lseek(kRegDup, 7, SEEK_SET) == 7 && pos(kReg) == 7, "dup'd fds share one offset");
    check(fcntl(kReg, F_GETFD) == 0, "reg fd must not be close-on-exec");

    struct stat st;
    check(fstat(kGhost, &st) == 0 && st.st_nlink == 0, "ghost file must be deleted");
    check((st.st_mode & 07777) == 0640, fmt::format("ghost mode {:o}", st.st_mode & 07777));
    char buf[64] = {};
    check(pread(kGhost, buf, sizeof buf, 0) == 13 && std::string(buf) == "ghost content", "ghost content");
    check(pos(kGhost) == 3, fmt::format("ghost pos {}", pos(kGhost)));
    char link[256] = {};
    check(readlink(fmt::format("/proc/self/fd/{}", kGhost).c_str(), link, sizeof link - 1) > 0 &&
              std::string(link) == work / "gone.txt (deleted)",
          fmt::format("ghost link {}", link));
    check((fcntl(kGhost, F_GETFL) & O_ACCMODE) == O_RDWR, "ghost access mode");

    check(fcntl(kPipeWr, F_GETFD) == FD_CLOEXEC, "pipe write end must be close-on-exec");
    check(read_some(kPipeRd, 9) == "pipe data", "pipe data");
    check(write_all(kPipeWr, "more") && read_some(kPipeRd) == "more", "pipe ends are one pipe");

    check((fcntl(kFifoRd, F_GETFL) & O_NONBLOCK) != 0, "FIFO read end O_NONBLOCK");
    check(read_some(kFifoRd) == "fifo data", "FIFO data");
    check((fcntl(kFifoWr, F_GETFL) & O_ACCMODE) == O_WRONLY, "FIFO write end access mode");

    check(fstat(kNull, &st) == 0 && st.st_rdev == makedev(1, 3) && fcntl(kNull, F_GETFD) == FD_CLOEXEC, "/dev/null");
    check(read_some(kLonelyRd) == "lonely", "read end without writer keeps its data");
    int rd = open(fmt::format("/proc/self/fd/{}", kLonelyWr).c_str(), O_RDONLY | O_NONBLOCK);
    check(rd >= 0 && read_some(rd) == "orphan", "write end without reader keeps its data");
}

template <class T>
std::vector<T> read_image(int dirfd, const std::string& name, ImageType type) {
    auto r = ImageReader::open_at(dirfd, name, type);
    REQUIRE(r);
    auto all = r->template read_all<T>();
    REQUIRE(all);
    return *all;
}

}  // namespace

TEST_CASE("regular, deleted, pipe, FIFO, /dev/null and dup'd fds survive dump and restore") {
    TempDir images, work;
    REQUIRE(write_all(UniqueFd(open((work / "reg.txt").c_str(), O_WRONLY | O_CREAT, 0644)).get(), "0123456789"));
    REQUIRE(mkfifo((work / "fifo").c_str(), 0600) == 0);

    pid_t pid = spawn_ready_child([&] { return setup_all_kinds(work); });
    REQUIRE(pid > 0);
    Options opts;
    Log log(1);
    FilesDumper dumper;
    auto st = dumper.dump_process_fds(pid, opts, log, images.fd());
    kill_child(pid);
    INFO((st ? "" : st.error().str()));
    REQUIRE(st);
    REQUIRE(dumper.finish(images.fd()));

    // The images say what the process had.
    auto fds = read_image<images::FdEntry>(images.fd(), image_file_name(ImageType::Fdinfo, pid), ImageType::Fdinfo);
    std::map<int, images::FdEntry> by_fd;
    for (const auto& f : fds)
        by_fd[f.fd()] = f;
    CHECK(by_fd.size() == 13);
    CHECK(by_fd[kReg].file_id() == by_fd[kRegDup].file_id());
    CHECK(by_fd[0].file_id() == by_fd[2].file_id());
    CHECK(by_fd[kPipeWr].fd_flags() == FD_CLOEXEC);
    CHECK(by_fd[kFifoRd].kind() == images::FD_FIFO);
    CHECK(by_fd[kNull].kind() == images::FD_CHR);

    auto files = read_image<images::FileEntry>(images.fd(), "files.img", ImageType::Files);
    std::map<uint32_t, images::FileEntry> by_id;
    for (const auto& f : files)
        by_id[f.id()] = f;
    CHECK(files.size() == 10);  // 0-2 are one; 10 and 11 are one
    const auto& reg = by_id[by_fd[kReg].file_id()].reg();
    CHECK(reg.path() == work / "reg.txt");
    CHECK(reg.pos() == 5);
    CHECK((reg.flags() & (O_ACCMODE | O_APPEND)) == (O_RDWR | O_APPEND));
    const auto& ghost = by_id[by_fd[kGhost].file_id()].reg();
    CHECK(ghost.deleted());
    CHECK(ghost.path() == work / "gone.txt");
    CHECK(std::filesystem::file_size(images / ghost.ghost_file()) == 13);

    auto pipes = read_image<images::PipeData>(images.fd(), "pipes-data.img", ImageType::PipeData);
    std::multiset<std::string> data;
    for (const auto& p : pipes) {
        CHECK(p.pipe_size() == 65536);
        data.insert(p.data());
    }
    CHECK(data == std::multiset<std::string>{"pipe data", "fifo data", "lonely", "orphan"});

    // The dumped process is gone; its FIFO is empty now. Restore into a fresh child.
    auto restorer = FilesRestorer::load(images.fd(), {pid}, log);
    INFO((restorer ? "" : restorer.error().str()));
    REQUIRE(restorer);
    CHECK(restorer->max_target_fd(pid) == kLonelyWr);
    std::string failures = run_checked_child([&] {
        auto r = restorer->restore_process_fds(pid, opts, log);
        if (!r) {
            report(r.error().str());
            return 2;
        }
        check_restored(work);
        return 0;
    });
    CHECK(failures == "");
    // Nothing was left behind: the ghost was unlinked again.
    std::set<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(work.path()))
        left.insert(e.path().filename());
    CHECK(left == std::set<std::string>{"reg.txt", "fifo"});
}

TEST_CASE("a terminal is refused without --shell-job and restored onto criu's terminal with it") {
    TempDir images;
    // The master stays here: closing it would hang the terminal up, and a master in the dumped
    // process would be refused on its own account.
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    REQUIRE(master);
    REQUIRE(grantpt(master.get()) == 0);
    REQUIRE(unlockpt(master.get()) == 0);
    std::string slave = ptsname(master.get());
    pid_t pid = spawn_ready_child([&] {
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || !close_all_but_ready())
            return false;
        int s = open(slave.c_str(), O_RDWR | O_NOCTTY);
        return s >= 0 && place(s, 5);
    });
    REQUIRE(pid > 0);
    Options opts;
    Log log(0);
    FilesDumper plain;
    auto st = plain.dump_process_fds(pid, opts, log, images.fd());
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().str(), Catch::Contains(fmt::format("pid {} fd 5: terminal {}", pid, slave)) &&
                                     Catch::Contains("--shell-job"));
    opts.shell_job = true;
    FilesDumper shell;
    st = shell.dump_process_fds(pid, opts, log, images.fd());
    kill_child(pid);
    INFO((st ? "" : st.error().str()));
    REQUIRE(st);
    REQUIRE(shell.finish(images.fd()));
    auto files = read_image<images::FileEntry>(images.fd(), "files.img", ImageType::Files);
    bool found = false;
    for (const auto& f : files)
        found |= f.kind() == images::FD_TTY && f.tty().shell_job();
    CHECK(found);

    // Restore under a "criu" whose stdin is a fresh terminal: fd 5 becomes that terminal.
    std::string failures = run_checked_child([&] {
        int m = posix_openpt(O_RDWR | O_NOCTTY);
        if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
            return 3;
        int s = open(ptsname(m), O_RDWR | O_NOCTTY);
        if (s < 0 || dup2(s, 951) < 0 || !place(s, 0) || !place(m, 950))
            return 4;
        auto fr = FilesRestorer::load(images.fd(), {pid}, log);
        if (!fr) {
            report(fr.error().str());
            return 5;
        }
        if (auto r = fr->restore_process_fds(pid, opts, log); !r) {
            report(r.error().str());
            return 6;
        }
        struct stat a, b;
        check(isatty(5) && fstat(5, &a) == 0 && fstat(951, &b) == 0 && a.st_rdev == b.st_rdev,
              "fd 5 is the restoring terminal");
        return 0;
    });
    CHECK(failures == "");
}
