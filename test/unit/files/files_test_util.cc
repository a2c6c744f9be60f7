#include "files_test_util.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "images/image_io.h"

namespace criu::test {

TempDir::TempDir() {
    char tmpl[] = "/tmp/criu-files-test-XXXXXX";
    if (!mkdtemp(tmpl))
        abort();
    path_ = tmpl;
    fd_.reset(open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

bool place(int fd, int target, bool cloexec) {
    if (fd == target)
        return fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) == 0;
    if (dup3(fd, target, cloexec ? O_CLOEXEC : 0) < 0)
        return false;
    close(fd);
    return true;
}

bool write_all(int fd, const std::string& s) {
    return write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
}

std::string read_some(int fd, size_t max) {
    std::string buf(max, '\0');
    ssize_t n = read(fd, buf.data(), max);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
}

pid_t spawn_ready_child(const std::function<bool()>& setup) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        place(p[1], kReadyFd, true);
        if (!setup())
            _exit(1);
        close(kReadyFd);
        for (;;)
            pause();
    }
    close(p[1]);
    char c;
    while (read(p[0], &c, 1) > 0) {
    }
    close(p[0]);
    // EOF also comes when setup failed and the child exited.
    int status;
    if (waitpid(pid, &status, WNOHANG) != 0)
        return -1;
    return pid;
}

void kill_child(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
}

void report(const std::string& line) { write_all(kReportFd, line + "\n"); }

void expect(bool ok, const std::string& what) {
    if (!ok)
        report(what);
}

bool stdio_null_rest_closed() {
    int null = open("/dev/null", O_RDWR);
    return null >= 0 && dup2(null, 0) >= 0 && dup2(null, 1) >= 0 && dup2(null, 2) >= 0 &&
           syscall(SYS_close_range, 3, kReadyFd - 1, 0) == 0 && syscall(SYS_close_range, kReadyFd + 1, ~0u, 0) == 0;
}

std::string dump_and_kill(pid_t pid, int images_dirfd, Log& log) {
    Options opts;
    FilesDumper dumper;
    auto st = dumper.dump_process_fds(pid, opts, log, images_dirfd);
    kill_child(pid);
    if (!st)
        return st.error().str();
    if (auto f = dumper.finish(images_dirfd); !f)
        return f.error().str();
    return "";
}

std::string restore_and_check(int images_dirfd, pid_t pid, Log& log, const std::function<void()>& check) {
    auto fr = FilesRestorer::load(images_dirfd, {pid}, log);
    if (!fr)
        return "load: " + fr.error().str();
    return run_checked_child([&] {
        Options opts;
        if (auto r = fr->restore_process_fds(pid, opts, log); !r) {
            report("restore: " + r.error().str());
            return 2;
        }
        check();
        return 0;
    });
}

std::map<int, images::FileEntry> dumped_files(int images_dirfd, pid_t pid) {
    auto fr = ImageReader::open_at(images_dirfd, image_file_name(ImageType::Files), ImageType::Files);
    auto dr = ImageReader::open_at(images_dirfd, image_file_name(ImageType::Fdinfo, pid), ImageType::Fdinfo);
    if (!fr || !dr)
        return {};
    auto files = fr->read_all<images::FileEntry>();
    auto fds = dr->read_all<images::FdEntry>();
    if (!files || !fds)
        return {};
    std::map<uint32_t, images::FileEntry> by_id;
    for (auto& f : *files)
        by_id[f.id()] = f;
    std::map<int, images::FileEntry> out;
    for (const auto& fe : *fds)
        out[fe.fd()] = by_id[fe.file_id()];
    return out;
}

std::string own_fdinfo(int fd) {
    int f = open(fmt::format("/proc/self/fdinfo/{}", fd).c_str(), O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return "";
    std::string out, chunk;
    while (!(chunk = read_some(f)).empty())
        out += chunk;
    close(f);
    return out;
}

std::string run_checked_child(const std::function<int()>& body) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return "pipe2 failed";
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        place(p[1], kReportFd, true);
        _exit(body());
    }
    close(p[1]);
    std::string out, chunk;
    while (!(chunk = read_some(p[0])).empty())
        out += chunk;
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && out.empty())
        return "";
    return fmt::format("status {:#x}: {}", status, out);
}

}  // namespace criu::test
