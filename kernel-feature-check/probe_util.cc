#include "kernel-feature-check/probe_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "kernel-feature-check/kernel_abi.h"

namespace criu::kfc {

namespace {

int64_t now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Waits for fd to become readable; false on timeout.
bool poll_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int left = int(deadline - now_ms());
        if (left < 0)
            left = 0;
        int r = ::poll(&p, 1, left);
        if (r > 0)
            return true;
        if (r == 0)
            return false;
        if (errno != EINTR)
            return false;
    }
}

bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= size_t(w);
    }
    return true;
}

}  // namespace

std::string errno_text(int err) {
    const char* name = strerrorname_np(err);
    return fmt::format("{} ({})", strerror(err), name ? name : fmt::format("errno {}", err));
}

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

ProbeResult yes(std::string detail) { return {true, std::move(detail)}; }
ProbeResult no(std::string detail) { return {false, std::move(detail)}; }
ProbeResult no_errno(std::string_view what) {
    int e = errno;
    return {false, fmt::format("{}: {}", what, errno_text(e))};
}

Expected<ScopedChild> ScopedChild::spawn(const std::function<int(int)>& body) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return fail_errno("pipe2");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return fail(e, "fork");
    }
    if (pid == 0) {
        close(p[0]);
        int rc = body(p[1]);
        _exit(rc);
    }
    close(p[1]);
    return ScopedChild(pid, UniqueFd(p[0]));
}

ScopedChild::ScopedChild(ScopedChild&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), reaped_(o.reaped_), ready_(std::move(o.ready_)) {}

ScopedChild::~ScopedChild() { kill_and_reap(); }

void ScopedChild::kill_and_reap() {
    if (pid_ <= 0 || reaped_)
        return;
    // SIGKILL also ends a ptrace-stopped or cgroup-v2-frozen tracee; the waitpid
    // then reaps it (we are both its parent and, where used, its tracer).
    ::kill(pid_, SIGKILL);
    int st;
    while (waitpid(pid_, &st, __WALL) < 0 && errno == EINTR) {
    }
    reaped_ = true;
}

Status ScopedChild::wait_ready(int timeout_ms) {
    if (!poll_readable(ready_.get(), timeout_ms))
        return fail(ETIMEDOUT, "child did not get ready");
    char c;
    ssize_t n = ::read(ready_.get(), &c, 1);
    if (n != 1)
        return fail(ECHILD, "child exited before getting ready");
    return {};
}

Expected<int> ScopedChild::wait(int options, int timeout_ms) {
    int64_t deadline = now_ms() + timeout_ms;
    long sleep_ns = 50'000;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid_, &st, options | WNOHANG);
        if (r == pid_) {
            if (WIFEXITED(st) || WIFSIGNALED(st))
                reaped_ = true;
            return st;
        }
        if (r < 0 && errno != EINTR)
            return fail_errno("waitpid {}", pid_);
        if (now_ms() > deadline)
            return failf(ETIMEDOUT, "pid {} did not change state in {} ms", pid_, timeout_ms);
        timespec ts{0, sleep_ns};
        nanosleep(&ts, nullptr);
        if (sleep_ns < 1'000'000)
            sleep_ns *= 2;
    }
}

Expected<ScopedMapping> ScopedMapping::map(size_t len, int prot, int flags, int fd) {
    void* p = ::mmap(nullptr, len, prot, flags, fd, 0);
    if (p == MAP_FAILED)
        return fail_errno("mmap {} bytes", len);
    return ScopedMapping(p, len);
}

ScopedMapping::ScopedMapping(ScopedMapping&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}

ScopedMapping::~ScopedMapping() {
    if (addr_)
        ::munmap(addr_, len_);
}

size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }

void child_ready(int ready_fd) {
    char c = 'r';
    write_all(ready_fd, &c, 1);
}

void child_park() {
    for (;;)
        pause();
}

ProbeResult run_isolated(const std::function<ProbeResult()>& fn, int timeout_ms) {
    auto child = ScopedChild::spawn([&](int out_fd) {
        ProbeResult r = fn();
        std::string msg = (r.present ? "1" : "0") + r.detail;
        return write_all(out_fd, msg.data(), msg.size()) ? 0 : 1;
    });
    if (!child)
        return no(child.error().str());
    // The child's result arrives on the "ready" pipe; EOF ends it.
    std::string msg;
    int64_t deadline = now_ms() + timeout_ms;
    char buf[512];
    for (;;) {
        int left = int(deadline - now_ms());
        if (left <= 0 || !poll_readable(child->ready_fd(), left))
            return no(fmt::format("probe child timed out after {} ms", timeout_ms));
        ssize_t n = ::read(child->ready_fd(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        msg.append(buf, size_t(n));
    }
    auto st = child->wait(0, timeout_ms);
    if (st && WIFSIGNALED(*st))
        return no(fmt::format("probe child killed by signal {} ({})", WTERMSIG(*st), sigabbrev_np(WTERMSIG(*st))));
    if (msg.empty())
        return no("probe child exited without a result");
    return {msg[0] == '1', msg.substr(1)};
}

Status seize_and_stop(ScopedChild& child, int timeout_ms) {
    pid_t pid = child.pid();
    if (ptrace(static_cast<__ptrace_request>(abi::kPtraceSeize), pid, nullptr, nullptr) < 0)
        return fail_errno("PTRACE_SEIZE {}", pid);
    if (ptrace(static_cast<__ptrace_request>(abi::kPtraceInterrupt), pid, nullptr, nullptr) < 0)
        return fail_errno("PTRACE_INTERRUPT {}", pid);
    // A signal-delivery stop may come first; pass the signal on and wait again.
    for (int i = 0; i < 4; i++) {
        int st = TRY(child.wait(__WALL, timeout_ms));
        if (!WIFSTOPPED(st))
            return failf(ECHILD, "pid {} ended while seizing (status {:#x})", pid, st);
        if ((st >> 16) == abi::kPtraceEventStop)
            return {};
        if (ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(uintptr_t(WSTOPSIG(st)))) < 0)
            return fail_errno("PTRACE_CONT {}", pid);
    }
    return failf(EPROTO, "pid {} never reported PTRACE_EVENT_STOP", pid);
}

Expected<std::string> read_text(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", path);
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("read {}", path);
        if (n == 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

Status write_text(const std::string& path, std::string_view data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", path);
    // One write(): cgroup and sysctl files act on each write call separately.
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0)
        return fail_errno("write {}", path);
    if (size_t(n) != data.size())
        return failf(EIO, "short write to {}", path);
    return {};
}

}  // namespace criu::kfc
