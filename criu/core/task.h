// Task: the only owner of ptrace for one thread (as in rr). Everything else asks it.
//
// Registers are cached and written back once, before the thread next runs or at detach. The
// destructor detaches on every path, so a thread is never left stopped by an error. A thread that
// exits under us is a normal error (ESRCH, "tid N of pid P exited"), never an assertion.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/remote_ptr.h"
#include "criu/core/unique_fd.h"

namespace criu {

// PTRACE_GET_RSEQ_CONFIGURATION result (5.13+): the thread's registered struct rseq.
struct RseqConfig {
    uint64_t ptr = 0;
    uint32_t len = 0;
    uint32_t signature = 0;
    uint32_t flags = 0;
};

// One seccomp filter as PTRACE_SECCOMP_GET_FILTER returned it.
struct SeccompFilterData {
    std::vector<uint8_t> bpf;  // struct sock_filter[]
    uint32_t flags = 0;        // SECCOMP_FILTER_FLAG_* from PTRACE_SECCOMP_GET_METADATA
};

// What stopped the thread at the last wait.
enum class StopKind {
    Event,        // PTRACE_EVENT_STOP (interrupt or group stop)
    SyscallEnter,
    SyscallExit,
};

class Task {
public:
    // PTRACE_SEIZE one thread of `pid` (no stop yet: call interrupt() and wait_for_stop()).
    // `suspend_seccomp` adds PTRACE_O_SUSPEND_SECCOMP so that injected syscalls are not filtered.
    static Expected<std::unique_ptr<Task>> seize(pid_t pid, pid_t tid, Log& log, bool suspend_seccomp);

    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    // Detaches if still attached (see detach()); errors are logged, the process may be gone.
    ~Task();

    pid_t pid() const { return pid_; }
    pid_t tid() const { return tid_; }
    bool alive() const { return alive_; }
    bool stopped() const { return stopped_; }

    // PTRACE_INTERRUPT; the stop is collected by wait_for_stop().
    Status interrupt();
    // Waits for the interrupt stop. A signal-delivery stop seen first is re-injected with
    // PTRACE_CONT(sig) (the thread then runs the handler setup and stops right after), as
    // KERNEL-NOTES section 1 says; exits are ESRCH. A thread that does not stop within
    // `timeout` (uninterruptible sleep: a vfork parent, NFS, FUSE) is ETIMEDOUT, naming its
    // state and wait channel; it stays seized with the interrupt pending.
    Status wait_for_stop(std::chrono::milliseconds timeout = kDefaultStopTimeout);
    static constexpr std::chrono::milliseconds kDefaultStopTimeout{10000};

    // Registers of the thread (cached). The first read at the seize stop is kept as
    // initial_regs(): the state the thread must go back to.
    Expected<user_regs_struct> regs();
    const user_regs_struct& initial_regs() const { return initial_regs_; }
    // Replaces the cached registers; they are written once, before the next resume or detach.
    void set_regs(const user_regs_struct& r);
    Status flush_regs();

    // Raw PTRACE_GETREGSET NT_X86_XSTATE buffer (standard XSAVE format).
    Expected<std::vector<uint8_t>> xstate();
    Status set_xstate(const std::vector<uint8_t>& buf);

    Expected<uint64_t> signal_mask();
    Status set_signal_mask(uint64_t mask);

    // Queued signals, without dequeuing: the thread's own queue, or with `shared` the process queue.
    Expected<std::vector<siginfo_t>> peek_siginfo(bool shared);
    Expected<RseqConfig> rseq_config();
    // Filters oldest first (the kernel numbers them newest first). Needs CAP_SYS_ADMIN.
    Expected<std::vector<SeccompFilterData>> seccomp_filters();

    // Resumes with PTRACE_SYSCALL and waits for the next syscall stop. Signal-delivery stops on
    // the way are suppressed and the signal kept for detach() (only SIGSTOP-like signals can
    // arrive while a RemoteSyscalls scope blocks everything else).
    Expected<StopKind> syscall_step();

    // Remote memory. process_vm_{read,write}v obey page protections; the *_force variants go
    // through /proc/PID/mem, which (FOLL_FORCE) also reads PROT_NONE and writes read-only text.
    Status read_mem(remote_ptr<void> addr, void* buf, size_t len);
    Status write_mem(remote_ptr<void> addr, const void* buf, size_t len);
    Status read_mem_force(remote_ptr<void> addr, void* buf, size_t len);
    Status write_mem_force(remote_ptr<void> addr, const void* buf, size_t len);
    template <class T>
    Expected<T> read_val(remote_ptr<T> addr) {
        T v{};
        TRY_VOID(read_mem(addr.as_void(), &v, sizeof(v)));
        return v;
    }

    // Writes dirty registers back and PTRACE_DETACHes, delivering a signal suppressed on the way.
    // A thread in group stop goes back to it. Called by the destructor if not called.
    Status detach();
    // After the caller killed the process: waits for this thread's exit, after which nothing
    // more is done with it. `leave_zombie` (for a leader whose real parent is the caller) only
    // observes the exit (WNOWAIT), so that the parent's own waitpid still gets the status.
    void reap_after_kill(bool leave_zombie);
    // After the caller killed the process and is about to exit: nothing more is done with this
    // thread (no wait, no detach). The kernel detaches a tracer's tracees when it exits.
    void forget_after_kill();

    // The error for a failed ptrace/wait call: ESRCH becomes "tid N of pid P exited".
    Error ptrace_error(const char* what, int err) const;

private:
    Task(pid_t pid, pid_t tid, Log& log) : pid_(pid), tid_(tid), log_(log) {}
    // Blocks for the next wait status of this thread; with a timeout, polls and gives
    // ETIMEDOUT when it passes.
    Expected<int> wait_status(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    Status handle_exit_status(int st);

    pid_t pid_;
    pid_t tid_;
    Log& log_;
    bool attached_ = false;
    bool alive_ = true;
    bool stopped_ = false;
    bool have_initial_regs_ = false;
    user_regs_struct initial_regs_{};
    std::optional<user_regs_struct> regs_;
    bool regs_dirty_ = false;
    int deferred_signal_ = 0;
    UniqueFd mem_fd_;  // /proc/PID/mem, opened on first forced access
};

}  // namespace criu
