#include "restore/sigreturn_catcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "criu/core/unique_fd.h"

namespace criu {
namespace {

constexpr long kNrRtSigreturn = 15;
constexpr long kNrMunmap = 11;
// The last steps of a restore are a few syscalls per thread; if the threads are not out of
// the blob by then, something is stuck.
constexpr std::chrono::seconds kReleaseLimit{30};

long pt(int req, pid_t tid, uint64_t addr, uint64_t data) {
    return ::ptrace(__ptrace_request(req), tid, reinterpret_cast<void*>(addr), reinterpret_cast<void*>(data));
}

std::string describe_status(int st) {
    if (WIFEXITED(st))
        return fmt::format("exited with status {}", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return fmt::format("was killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
    return fmt::format("changed state ({:#x})", st);
}

}  // namespace

Expected<SigreturnCatcher> SigreturnCatcher::seize(pid_t pid, const std::vector<pid_t>& tids, Log& log) {
    SigreturnCatcher c(pid, log);
    // EXITKILL: if criu dies while the threads are still in the blob, they die too.
    // SUSPEND_SECCOMP: the restored filters are in place before the last syscalls run.
    uint64_t opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_SUSPEND_SECCOMP;
    for (pid_t tid : tids) {
        if (pt(PTRACE_SEIZE, tid, 0, opts) < 0) {
            // SUSPEND_SECCOMP needs CAP_SYS_ADMIN and a tracer without seccomp of its own.
            if (errno != EPERM || !(opts & PTRACE_O_SUSPEND_SECCOMP))
                return fail_errno("pid {} tid {}: PTRACE_SEIZE", pid, tid);
            opts &= ~uint64_t(PTRACE_O_SUSPEND_SECCOMP);
            if (pt(PTRACE_SEIZE, tid, 0, opts) < 0)
                return fail_errno("pid {} tid {}: PTRACE_SEIZE", pid, tid);
        }
        c.threads_[tid] = State::Running;
    }
    for (auto& [tid, st] : c.threads_) {
        if (pt(PTRACE_INTERRUPT, tid, 0, 0) < 0)
            return fail_errno("pid {} tid {}: PTRACE_INTERRUPT", pid, tid);
        int status = 0;
        if (::waitpid(tid, &status, __WALL) != tid)
            return fail_errno("pid {} tid {}: waiting for the ptrace stop", pid, tid);
        if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
            if (!WIFSTOPPED(status)) {
                st = State::Gone;
                if (tid == pid)
                    c.exit_status_ = status;
                return failf(ESRCH, "pid {} tid {} {} while criu attached to it", pid, tid,
                             describe_status(status));
            }
            return failf(EINVAL, "pid {} tid {}: unexpected stop {:#x} while the thread waits in the restorer",
                         pid, tid, status);
        }
    }
    log.debug("restore", "pid {}: seized {} threads in the restorer", pid, c.threads_.size());
    return c;
}

SigreturnCatcher::~SigreturnCatcher() { detach_all(); }

void SigreturnCatcher::detach_all() {
    for (auto& [tid, st] : threads_) {
        if (st != State::Gone)
            pt(PTRACE_DETACH, tid, 0, 0);
        st = State::Gone;
    }
}

Status SigreturnCatcher::handle_stop(pid_t tid, int status) {
    State& st = threads_[tid];
    if (!WIFSTOPPED(status)) {
        st = State::Gone;
        if (tid == pid_)
            exit_status_ = status;
        return failf(ESRCH, "pid {} tid {} {} before it left the restorer", pid_, tid, describe_status(status));
    }
    int sig = WSTOPSIG(status);
    int inject = 0;
    if (sig == (SIGTRAP | 0x80)) {
        __ptrace_syscall_info info{};
        if (pt(PTRACE_GET_SYSCALL_INFO, tid, sizeof(info), reinterpret_cast<uint64_t>(&info)) < 0)
            return fail_errno("pid {} tid {}: PTRACE_GET_SYSCALL_INFO", pid_, tid);
        if (info.op == PTRACE_SYSCALL_INFO_ENTRY && info.entry.nr == kNrRtSigreturn) {
            st = State::InSigreturn;
        } else if (info.op == PTRACE_SYSCALL_INFO_EXIT && st == State::InSigreturn) {
            // Stays stopped: the dumped context is loaded, nothing of the process ran yet. A
            // frame the kernel refused leaves the blob's registers and a pending SIGSEGV.
            user_regs_struct regs{};
            if (pt(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) < 0)
                return fail_errno("pid {} tid {}: PTRACE_GETREGS", pid_, tid);
            auto want = expected_rip_.find(tid);
            if (want != expected_rip_.end() && regs.rip != want->second)
                return failf(EINVAL, "pid {} tid {}: rt_sigreturn did not load the dumped context (rip {:#x}, "
                                     "dumped {:#x})", pid_, tid, regs.rip, want->second);
            st = State::Done;
            return {};
        }
    } else if ((status >> 16) == 0 && sig != SIGTRAP) {
        inject = sig;  // a signal-delivery stop: hand the signal on
    }
    if (pt(PTRACE_SYSCALL, tid, 0, uint64_t(inject)) < 0)
        return fail_errno("pid {} tid {}: PTRACE_SYSCALL", pid_, tid);
    return {};
}

Status SigreturnCatcher::unmap_area(uint64_t area_start, uint64_t area_end, uint64_t syscall_insn) {
    pid_t tid = pid_;
    user_regs_struct saved{}, regs{};
    if (pt(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&saved)) < 0)
        return fail_errno("pid {}: PTRACE_GETREGS", tid);
    uint64_t saved_mask = 0, all = ~0ull;
    if (pt(PTRACE_GETSIGMASK, tid, 8, reinterpret_cast<uint64_t>(&saved_mask)) < 0 ||
        pt(PTRACE_SETSIGMASK, tid, 8, reinterpret_cast<uint64_t>(&all)) < 0)
        return fail_errno("pid {}: blocking signals for the munmap", tid);
    // With every signal blocked nothing can be delivered on the detour through the blob.
    regs = saved;
    regs.rip = syscall_insn;
    regs.rax = kNrMunmap;
    regs.rdi = area_start;
    regs.rsi = area_end - area_start;
    regs.orig_rax = uint64_t(-1);  // no syscall-restart fix-up on the way back to user mode
    if (pt(PTRACE_SETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) < 0)
        return fail_errno("pid {}: PTRACE_SETREGS", tid);
    long result = -1;
    for (int stop = 0; stop < 2;) {
        if (pt(PTRACE_SYSCALL, tid, 0, 0) < 0)
            return fail_errno("pid {}: PTRACE_SYSCALL", tid);
        int status = 0;
        if (::waitpid(tid, &status, __WALL) != tid)
            return fail_errno("pid {}: waitpid", tid);
        if (!WIFSTOPPED(status)) {
            threads_[tid] = State::Gone;
            exit_status_ = status;
            return failf(ESRCH, "pid {} {} while criu removed the restorer area", tid, describe_status(status));
        }
        if (WSTOPSIG(status) != (SIGTRAP | 0x80))
            continue;  // an interrupt stop; the syscall stops still come
        if (++stop == 2) {
            if (pt(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) < 0)
                return fail_errno("pid {}: PTRACE_GETREGS", tid);
            result = long(regs.rax);
        }
    }
    if (pt(PTRACE_SETREGS, tid, 0, reinterpret_cast<uint64_t>(&saved)) < 0 ||
        pt(PTRACE_SETSIGMASK, tid, 8, reinterpret_cast<uint64_t>(&saved_mask)) < 0)
        return fail_errno("pid {}: putting back the registers after the munmap", tid);
    if (result != 0)
        return failf(int(-result), "pid {}: munmap of the restorer area {:#x}-{:#x} failed", tid, area_start,
                     area_end);
    log_->debug("restore", "pid {}: restorer area {:#x}-{:#x} removed", tid, area_start, area_end);
    return {};
}

Status SigreturnCatcher::release(int go_fd, uint64_t area_start, uint64_t area_end, uint64_t syscall_insn,
                                 const std::map<pid_t, uint64_t>& expected_rip,
                                 const std::function<Status()>& on_idle) {
    expected_rip_ = expected_rip;
    char go = 'G';
    if (::write(go_fd, &go, 1) != 1)
        return fail_errno("pid {}: writing go to the restorer", pid_);
    for (auto& [tid, st] : threads_)
        if (pt(PTRACE_SYSCALL, tid, 0, 0) < 0)
            return fail_errno("pid {} tid {}: PTRACE_SYSCALL", pid_, tid);
    // Every ptrace stop sends criu a SIGCHLD: with it blocked and read through a signalfd, the
    // loop sleeps until a thread stops instead of polling. Another thread of the caller may
    // take the signal first; the poll timeout covers that.
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &old);
    UniqueFd sfd(::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
    struct MaskBack {
        sigset_t* old;
        ~MaskBack() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
    } mask_back{&old};
    auto deadline = std::chrono::steady_clock::now() + kReleaseLimit;
    for (;;) {
        bool all_done = true, progressed = false;
        for (auto& [tid, st] : threads_) {
            if (st == State::Done)
                continue;
            all_done = false;
            int status = 0;
            pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
            if (r < 0)
                return fail_errno("pid {} tid {}: waitpid", pid_, tid);
            if (r == 0)
                continue;
            progressed = true;
            TRY_VOID(handle_stop(tid, status));
        }
        if (all_done)
            break;
        if (!progressed) {
            TRY_VOID(on_idle());
            if (std::chrono::steady_clock::now() > deadline)
                return failf(ETIMEDOUT, "pid {}: the restored threads did not leave the restorer within {} s",
                             pid_, kReleaseLimit.count());
            if (sfd) {
                pollfd pfd{sfd.get(), POLLIN, 0};
                ::poll(&pfd, 1, 10);
                signalfd_siginfo si;
                while (::read(sfd.get(), &si, sizeof(si)) == ssize_t(sizeof(si))) {
                }
            } else {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }
    }
    TRY_VOID(unmap_area(area_start, area_end, syscall_insn));
    detach_all();
    return {};
}

}  // namespace criu
