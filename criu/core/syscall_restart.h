// The syscall-restart fix-up (KERNEL-NOTES section 1, pitfall 5).
//
// A thread stopped inside an interrupted syscall shows orig_rax = the syscall number and
// rax = -ERESTART*. When it resumes from a signal/interrupt stop without a handler, the kernel
// rewinds it to re-execute the 2-byte `syscall`. Anything that resumes the thread from
// elsewhere (a syscall-exit stop, an rt_sigreturn, a restored process) must apply the rule
// itself, because then the kernel will not.
#pragma once

#include <sys/syscall.h>
#include <sys/user.h>

#include <cerrno>
#include <cstdint>

namespace criu {

inline constexpr int64_t kERestartSys = -512;
inline constexpr int64_t kERestartNoIntr = -513;
inline constexpr int64_t kERestartNoHand = -514;
inline constexpr int64_t kERestartRestartBlock = -516;

enum class RestartMode {
    // What the kernel does itself (arch_do_signal_or_restart): -516 re-enters through
    // restart_syscall, which uses the restart_block still held by this very thread.
    Kernel,
    // For a context that is resumed after an rt_sigreturn or in another process: the
    // restart_block is gone (rt_sigreturn resets it). A relative nanosleep/clock_nanosleep
    // with a `rem` pointer is re-issued for the time that was left (see sleep_restart); an
    // absolute clock_nanosleep is simply re-issued; anything else (poll, futex with a
    // timeout, ...) gets -EINTR, as CRIU does.
    Image,
};

// When the kernel interrupts a relative sleep that has a `rem` pointer, do_nanosleep()
// writes the time left to *rem before returning -ERESTART_RESTARTBLOCK (kernel/time/
// hrtimer.c, nanosleep_copyout). So the sleep can be re-issued for exactly that time by
// passing `rem` as the request: the thread then sleeps only what was left and returns 0.
// Returns false when the call cannot be re-issued that way.
inline bool sleep_restart(user_regs_struct& r) {
    constexpr uint64_t kTimerAbstime = 1;  // TIMER_ABSTIME
    if (r.orig_rax == SYS_nanosleep) {     // nanosleep(req=rdi, rem=rsi)
        if (r.rsi == 0)
            return false;
        r.rdi = r.rsi;
    } else if (r.orig_rax == SYS_clock_nanosleep) {  // clock_nanosleep(clock=rdi, flags=rsi, req=rdx, rem=r10)
        if ((r.rsi & kTimerAbstime) == 0) {
            if (r.r10 == 0)
                return false;
            r.rdx = r.r10;
        }
    } else {
        return false;
    }
    r.rax = r.orig_rax;
    r.rip -= 2;
    return true;
}

// Returns the registers with the fix-up applied and orig_rax = -1 (so it is never applied twice).
inline user_regs_struct restart_fixup(user_regs_struct r, RestartMode mode) {
    int64_t orig = static_cast<int64_t>(r.orig_rax);
    int64_t rax = static_cast<int64_t>(r.rax);
    if (orig >= 0) {
        if (rax == kERestartSys || rax == kERestartNoIntr || rax == kERestartNoHand) {
            r.rax = r.orig_rax;
            r.rip -= 2;
        } else if (rax == kERestartRestartBlock) {
            // Sleeps are re-issued explicitly in both modes: then a later dump sees the
            // sleep's own syscall number, not restart_syscall, and can re-issue it again.
            if (sleep_restart(r)) {
            } else if (mode == RestartMode::Kernel) {
                r.rax = SYS_restart_syscall;
                r.rip -= 2;
            } else {
                r.rax = static_cast<uint64_t>(-EINTR);
            }
        }
    }
    r.orig_rax = static_cast<uint64_t>(-1);
    return r;
}

}  // namespace criu
