#include "criu/core/task.h"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "criu/core/proc_parse.h"
#include "criu/core/syscall_restart.h"

namespace criu {

namespace {

// PTRACE_GET_SYSCALL_INFO ops (linux/ptrace.h; glibc 2.36 names only the struct).
constexpr uint8_t kSyscallInfoEntry = 1;
constexpr uint8_t kSyscallInfoExit = 2;

size_t xsave_buffer_size() {
    // CPUID(0xD,0).EBX: bytes needed for the features enabled in XCR0 (2432 here with AVX-512).
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(0xd, 0, &a, &b, &c, &d) && b >= 512)
        return b;
    return 4096;
}

std::string describe_wait_status(int st) {
    if (WIFEXITED(st))
        return fmt::format("exited with status {}", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return fmt::format("was killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
    return fmt::format("wait status {:#x}", st);
}

}  // namespace

Expected<std::unique_ptr<Task>> Task::seize(pid_t pid, pid_t tid, Log& log, bool suspend_seccomp) {
    long opts = PTRACE_O_TRACESYSGOOD;
    // Injected syscalls must not be killed or faked by the target's own filters.
    if (suspend_seccomp)
        opts |= PTRACE_O_SUSPEND_SECCOMP;
    if (ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(opts)) < 0) {
        int e = errno;
        if (e == ESRCH)
            return failf(ESRCH, "tid {} of pid {} exited before it could be seized", tid, pid);
        // ptrace refuses a thread that has already exited (a zombie not yet released) with EPERM,
        // not ESRCH: a short-lived thread listed a moment ago is gone, not forbidden.
        if (e == EPERM) {
            auto st = read_status(pid, tid);
            if (!st || st->state == 'Z' || st->state == 'X')
                return failf(ESRCH, "tid {} of pid {} exited before it could be seized", tid, pid);
            return failf(EPERM, "cannot seize tid {} of pid {} (already traced, or not permitted)", tid, pid);
        }
        return fail(e, fmt::format("PTRACE_SEIZE of tid {} of pid {}", tid, pid));
    }
    std::unique_ptr<Task> t(new Task(pid, tid, log));
    t->attached_ = true;
    log.debug("task", "seized tid {} of pid {}", tid, pid);
    return t;
}

Task::~Task() {
    if (!attached_)
        return;
    auto r = detach();
    if (!r)
        log_.warn("task", "{}", r.error().str());
}

Error Task::ptrace_error(const char* what, int err) const {
    if (err == ESRCH) {
        // ptrace says ESRCH both for "gone" and for "not in a ptrace stop": tell them apart.
        if (access(fmt::format("/proc/{}/task/{}", pid_, tid_).c_str(), F_OK) != 0)
            return Error(ESRCH, fmt::format("tid {} of pid {} exited ({})", tid_, pid_, what));
        return Error(ESRCH, fmt::format("tid {} of pid {}: {}: the thread is not in a ptrace stop", tid_, pid_, what));
    }
    return Error(err, fmt::format("tid {} of pid {}: {}", tid_, pid_, what));
}

Status Task::interrupt() {
    if (ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0)
        return std::unexpected(ptrace_error("PTRACE_INTERRUPT", errno));
    return {};
}

Expected<int> Task::wait_status(std::optional<std::chrono::milliseconds> timeout) {
    int st = 0;
    auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
    // The stop after an interrupt normally comes within microseconds: poll fast, then slower.
    auto backoff = std::chrono::microseconds(20);
    for (;;) {
        pid_t r = waitpid(tid_, &st, __WALL | (timeout ? WNOHANG : 0));
        if (r == tid_)
            return st;
        if (r == 0) {
            if (std::chrono::steady_clock::now() >= deadline) {
                std::string state = "?";
                if (auto s = read_status(pid_, tid_))
                    state = std::string(1, s->state);
                std::string wchan = read_proc_file(fmt::format("/proc/{}/task/{}/wchan", pid_, tid_)).value_or("?");
                return failf(ETIMEDOUT, "tid {} of pid {} did not stop within {} ms (state {}, waiting in {})", tid_,
                             pid_, timeout->count(), state, wchan);
            }
            timespec ts{0, static_cast<long>(std::chrono::nanoseconds(backoff).count())};
            nanosleep(&ts, nullptr);
            backoff = std::min(backoff * 2, std::chrono::microseconds(2000));
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ECHILD) {
            // Someone else reaped it, or it is no longer our tracee.
            alive_ = false;
            attached_ = false;
            return failf(ESRCH, "tid {} of pid {} exited (no longer traced)", tid_, pid_);
        }
        return fail_errno("waitpid on tid {} of pid {}", tid_, pid_);
    }
}

Status Task::handle_exit_status(int st) {
    alive_ = false;
    attached_ = false;
    stopped_ = false;
    return failf(ESRCH, "tid {} of pid {} {}", tid_, pid_, describe_wait_status(st));
}

Status Task::wait_for_stop(std::chrono::milliseconds timeout) {
    for (;;) {
        int st = TRY(wait_status(timeout));
        if (!WIFSTOPPED(st))
            return handle_exit_status(st);
        int event = st >> 16;
        int sig = WSTOPSIG(st);
        if (event == PTRACE_EVENT_STOP)
            break;
        int inject = 0;
        if (event == 0 && sig != (SIGTRAP | 0x80)) {
            // A signal-delivery stop came before our interrupt: let the signal be delivered (the
            // pending interrupt stops the thread right after), or it would be lost.
            inject = sig;
            log_.debug("task", "tid {}: re-injecting signal {} seen before the interrupt stop", tid_, sig);
        }
        if (ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(inject))) < 0)
            return std::unexpected(ptrace_error("PTRACE_CONT", errno));
    }
    stopped_ = true;
    regs_.reset();
    regs_dirty_ = false;
    if (!have_initial_regs_) {
        initial_regs_ = TRY(regs());
        have_initial_regs_ = true;
    }
    return {};
}

Expected<user_regs_struct> Task::regs() {
    if (!regs_) {
        user_regs_struct r{};
        if (ptrace(PTRACE_GETREGS, tid_, nullptr, &r) < 0)
            return std::unexpected(ptrace_error("PTRACE_GETREGS", errno));
        regs_ = r;
    }
    return *regs_;
}

void Task::set_regs(const user_regs_struct& r) {
    regs_ = r;
    regs_dirty_ = true;
}

Status Task::flush_regs() {
    if (!regs_dirty_)
        return {};
    if (ptrace(PTRACE_SETREGS, tid_, nullptr, &*regs_) < 0)
        return std::unexpected(ptrace_error("PTRACE_SETREGS", errno));
    regs_dirty_ = false;
    return {};
}

Expected<std::vector<uint8_t>> Task::xstate() {
    std::vector<uint8_t> buf(xsave_buffer_size());
    iovec iov{buf.data(), buf.size()};
    if (ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
        return std::unexpected(ptrace_error("PTRACE_GETREGSET NT_X86_XSTATE", errno));
    buf.resize(iov.iov_len);
    return buf;
}

Status Task::set_xstate(const std::vector<uint8_t>& buf) {
    std::vector<uint8_t> copy = buf;
    iovec iov{copy.data(), copy.size()};
    if (ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
        return std::unexpected(ptrace_error("PTRACE_SETREGSET NT_X86_XSTATE", errno));
    return {};
}

Expected<uint64_t> Task::signal_mask() {
    uint64_t m = 0;
    if (ptrace(PTRACE_GETSIGMASK, tid_, reinterpret_cast<void*>(sizeof(m)), &m) < 0)
        return std::unexpected(ptrace_error("PTRACE_GETSIGMASK", errno));
    return m;
}

Status Task::set_signal_mask(uint64_t mask) {
    if (ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof(mask)), &mask) < 0)
        return std::unexpected(ptrace_error("PTRACE_SETSIGMASK", errno));
    return {};
}

Expected<std::vector<siginfo_t>> Task::peek_siginfo(bool shared) {
    std::vector<siginfo_t> out;
    constexpr int kBatch = 32;
    for (;;) {
        __ptrace_peeksiginfo_args a{};
        a.off = out.size();
        a.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
        a.nr = kBatch;
        siginfo_t buf[kBatch];
        long n = ptrace(PTRACE_PEEKSIGINFO, tid_, &a, buf);
        if (n < 0)
            return std::unexpected(ptrace_error("PTRACE_PEEKSIGINFO", errno));
        if (n == 0)
            break;
        out.insert(out.end(), buf, buf + n);
    }
    return out;
}

Expected<RseqConfig> Task::rseq_config() {
    __ptrace_rseq_configuration c{};
    if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid_, reinterpret_cast<void*>(sizeof(c)), &c) < 0)
        return std::unexpected(ptrace_error("PTRACE_GET_RSEQ_CONFIGURATION", errno));
    RseqConfig r;
    r.ptr = c.rseq_abi_pointer;
    r.len = c.rseq_abi_size;
    r.signature = c.signature;
    r.flags = c.flags;
    return r;
}

Expected<std::vector<SeccompFilterData>> Task::seccomp_filters() {
    std::vector<SeccompFilterData> out;
    for (unsigned long idx = 0;; ++idx) {
        long n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid_, reinterpret_cast<void*>(idx), nullptr);
        if (n < 0) {
            // ENOENT past the oldest filter; EINVAL when the task is not in filter mode.
            if (errno == ENOENT || (errno == EINVAL && idx == 0))
                break;
            return std::unexpected(ptrace_error("PTRACE_SECCOMP_GET_FILTER", errno));
        }
        SeccompFilterData f;
        f.bpf.resize(static_cast<size_t>(n) * 8);  // sizeof(struct sock_filter)
        if (ptrace(PTRACE_SECCOMP_GET_FILTER, tid_, reinterpret_cast<void*>(idx), f.bpf.data()) < 0)
            return std::unexpected(ptrace_error("PTRACE_SECCOMP_GET_FILTER", errno));
        __ptrace_seccomp_metadata md{};
        md.filter_off = idx;
        if (ptrace(PTRACE_SECCOMP_GET_METADATA, tid_, reinterpret_cast<void*>(sizeof(md)), &md) < 0)
            return std::unexpected(ptrace_error("PTRACE_SECCOMP_GET_METADATA", errno));
        f.flags = static_cast<uint32_t>(md.flags);
        out.push_back(std::move(f));
    }
    // Index 0 is the newest filter; the image wants them in installation order.
    std::reverse(out.begin(), out.end());
    return out;
}

Expected<StopKind> Task::syscall_step() {
    TRY_VOID(flush_regs());
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, tid_, nullptr, nullptr) < 0)
            return std::unexpected(ptrace_error("PTRACE_SYSCALL", errno));
        stopped_ = false;
        regs_.reset();
        int st = TRY(wait_status());
        if (!WIFSTOPPED(st))
            return std::unexpected(handle_exit_status(st).error());
        stopped_ = true;
        int event = st >> 16;
        int sig = WSTOPSIG(st);
        if (event == 0 && sig == (SIGTRAP | 0x80)) {
            __ptrace_syscall_info info{};
            if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, reinterpret_cast<void*>(sizeof(info)), &info) < 0)
                return std::unexpected(ptrace_error("PTRACE_GET_SYSCALL_INFO", errno));
            if (info.op == kSyscallInfoEntry)
                return StopKind::SyscallEnter;
            if (info.op == kSyscallInfoExit)
                return StopKind::SyscallExit;
            return std::unexpected(ptrace_error("unexpected syscall stop kind", EPROTO));
        }
        if (event == 0) {
            // Signal-delivery stop: suppress now, deliver at detach so it is not lost.
            log_.debug("task", "tid {}: deferring signal {} until detach", tid_, sig);
            deferred_signal_ = sig;
        }
        // Group stops and other events: just go on.
    }
}

Status Task::read_mem(remote_ptr<void> addr, void* buf, size_t len) {
    iovec local{buf, len};
    iovec remote{reinterpret_cast<void*>(addr.addr()), len};
    ssize_t n = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
    if (n < 0)
        return fail_errno("pid {}: reading {} bytes at {}", pid_, len, addr);
    if (static_cast<size_t>(n) != len)
        return failf(EFAULT, "pid {}: short read at {} ({} of {} bytes)", pid_, addr, n, len);
    return {};
}

Status Task::write_mem(remote_ptr<void> addr, const void* buf, size_t len) {
    iovec local{const_cast<void*>(buf), len};
    iovec remote{reinterpret_cast<void*>(addr.addr()), len};
    ssize_t n = process_vm_writev(pid_, &local, 1, &remote, 1, 0);
    if (n < 0)
        return fail_errno("pid {}: writing {} bytes at {}", pid_, len, addr);
    if (static_cast<size_t>(n) != len)
        return failf(EFAULT, "pid {}: short write at {} ({} of {} bytes)", pid_, addr, n, len);
    return {};
}

Status Task::read_mem_force(remote_ptr<void> addr, void* buf, size_t len) {
    if (!mem_fd_) {
        mem_fd_.reset(::open(fmt::format("/proc/{}/mem", pid_).c_str(), O_RDWR | O_CLOEXEC));
        if (!mem_fd_)
            return fail_errno("pid {}: cannot open /proc/{}/mem", pid_, pid_);
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(mem_fd_.get(), static_cast<char*>(buf) + done, len - done, addr.addr() + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return failf(n < 0 ? errno : EFAULT, "pid {}: reading /proc/{}/mem at {:#x}", pid_, pid_, addr.addr() + done);
        done += n;
    }
    return {};
}

Status Task::write_mem_force(remote_ptr<void> addr, const void* buf, size_t len) {
    if (!mem_fd_) {
        mem_fd_.reset(::open(fmt::format("/proc/{}/mem", pid_).c_str(), O_RDWR | O_CLOEXEC));
        if (!mem_fd_)
            return fail_errno("pid {}: cannot open /proc/{}/mem", pid_, pid_);
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(mem_fd_.get(), static_cast<const char*>(buf) + done, len - done, addr.addr() + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return failf(n < 0 ? errno : EFAULT, "pid {}: writing /proc/{}/mem at {:#x}", pid_, pid_, addr.addr() + done);
        done += n;
    }
    return {};
}

Status Task::detach() {
    if (!attached_)
        return {};
    if (alive_ && !stopped_) {
        // PTRACE_DETACH needs a stopped tracee.
        auto r = interrupt();
        if (r)
            r = wait_for_stop();
        if (!r) {
            attached_ = false;
            return std::unexpected(std::move(r.error()));
        }
    }
    if (alive_ && stopped_) {
        // A thread interrupted in a relative sleep would resume through restart_syscall;
        // re-issue the sleep itself for the time left instead (syscall_restart.h), so that a
        // later dump of this still-running process can restore it too (--leave-running).
        auto cur = regs();
        if (cur && static_cast<int64_t>(cur->orig_rax) >= 0 &&
            static_cast<int64_t>(cur->rax) == kERestartRestartBlock) {
            user_regs_struct r = *cur;
            if (sleep_restart(r)) {
                r.orig_rax = static_cast<uint64_t>(-1);
                set_regs(r);
            }
        }
    }
    Status flushed = flush_regs();
    long sig = deferred_signal_;
    attached_ = false;
    stopped_ = false;
    if (ptrace(PTRACE_DETACH, tid_, nullptr, reinterpret_cast<void*>(sig)) < 0)
        return std::unexpected(ptrace_error("PTRACE_DETACH", errno));
    log_.debug("task", "detached tid {} of pid {}", tid_, pid_);
    if (!flushed)
        return std::unexpected(std::move(flushed.error()));
    return {};
}

void Task::forget_after_kill() {
    alive_ = false;
    attached_ = false;
    stopped_ = false;
}

void Task::reap_after_kill(bool leave_zombie) {
    while (alive_ && attached_) {
        if (leave_zombie) {
            siginfo_t si{};
            int r = waitid(P_PID, tid_, &si, WEXITED | WNOWAIT | __WALL);
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        auto st = wait_status();
        if (!st || !WIFSTOPPED(*st))
            break;
        // A stop that raced with SIGKILL: the kill wins as soon as the thread runs again.
        ptrace(PTRACE_CONT, tid_, nullptr, nullptr);
    }
    alive_ = false;
    attached_ = false;
    stopped_ = false;
}

}  // namespace criu
