#include "files_test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

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
