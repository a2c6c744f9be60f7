// RemoteSyscalls: an RAII scope that runs syscalls inside one seized thread, and survives the
// death of the dumper (KERNEL-NOTES "Surviving the dumper's own death").
//
// How: on opening, a signal frame holding the thread's original context (restart-fixed
// registers, XSAVE state, signal mask) is written below the red zone of its stack. From then on
// the thread is always "parked": its rsp points at that frame and its rip at code that ends in
// rt_sigreturn, so if the dumper is SIGKILLed at any instant the kernel detaches the thread, it
// finishes at most the one syscall it was given, runs rt_sigreturn and continues exactly where
// it was. Results are taken at the syscall-exit stop (PTRACE_SYSCALL); nothing ever executes
// int3. Signals are blocked while the scope is open (the frame restores the real mask).
//
// The code lives in a private mapping of its own: the first scope of a process maps it with one
// syscall run from 9 bytes written over the start of the process's first executable mapping (the
// ELF header or _init, never executed again), and restores those bytes right after. All further
// syscalls run from the mapping. Closing the owner scope unmaps it the same way. Pointer
// arguments go through the scratch part of the mapping with process_vm_{read,write}v.
#pragma once

#include <sys/user.h>

#include <cstddef>
#include <cstdint>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/remote_ptr.h"
#include "criu/core/task.h"

namespace criu {

class RemoteSyscalls {
public:
    // Size of the mapping made in the target: one code page and the scratch pages.
    static constexpr size_t kAreaSize = 16 * 4096;
    static constexpr size_t kCodeSize = 4096;

    // Opens a scope on `task` (stopped), creating the code + scratch mapping in its process.
    static Expected<RemoteSyscalls> open(Task& task, Log& log);
    // Opens a scope on another stopped thread of the same process, sharing the mapping of
    // `owner`. Must be closed before `owner`. Nothing is written over the process's text.
    static Expected<RemoteSyscalls> open_sibling(Task& task, const RemoteSyscalls& owner, Log& log);

    RemoteSyscalls(RemoteSyscalls&& o) noexcept;
    RemoteSyscalls& operator=(RemoteSyscalls&&) = delete;
    RemoteSyscalls(const RemoteSyscalls&) = delete;
    // Calls close() if it was not called; an error is logged (the caller had no way to act).
    ~RemoteSyscalls();

    // Runs syscall `nr` in the thread. Returns the raw rax: -4095..-1 is -errno of the target.
    // An Error means the injection itself failed (e.g. the thread died: ESRCH).
    Expected<long> syscall(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                           uint64_t a5 = 0, uint64_t a6 = 0);
    // Same, but a -errno result is an Error naming the syscall, the thread and the reason.
    Expected<long> syscall_checked(const char* name, long nr, uint64_t a1 = 0, uint64_t a2 = 0,
                                   uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);

    // Scratch memory in the target for pointer arguments (read/write for the target).
    remote_ptr<void> scratch() const { return area_ + kCodeSize; }
    static constexpr size_t scratch_size() { return kAreaSize - kCodeSize; }
    Status write_scratch(size_t off, const void* buf, size_t len);
    Status read_scratch(size_t off, void* buf, size_t len);

    remote_ptr<void> area() const { return area_; }
    Task& task() { return *task_; }

    // Unmaps the area (owner), restores the signal mask, the registers (restart-fixed if a
    // syscall ran, see syscall_restart.h) and any text bytes, in an order where every instant
    // is safe to die in. Idempotent.
    Status close();

private:
    RemoteSyscalls(Task& task, Log& log, bool owner) : task_(&task), log_(&log), owner_(owner) {}
    Status open_common();
    Status build_frame();
    Status map_area();
    Expected<remote_ptr<void>> pick_text_spot();
    Status poke_text();
    Status unpoke_text();
    Status park_at(remote_ptr<void> code);
    Expected<long> run_from(remote_ptr<void> code, long nr, const uint64_t (&args)[6]);
    Status unmap_area();

    Task* task_;
    Log* log_;
    bool owner_;
    bool open_ = false;

    user_regs_struct saved_regs_{};  // at opening, raw
    uint64_t saved_mask_ = 0;
    remote_ptr<void> frame_rsp_;     // rsp that makes rt_sigreturn find the frame
    user_regs_struct parked_{};      // saved_regs_ with rsp = frame_rsp_ and orig_rax = -1

    remote_ptr<void> area_;           // code page + scratch, 0 until mapped
    remote_ptr<void> text_spot_;      // where the bootstrap code goes over existing text
    uint8_t text_orig_[16] = {};
    bool text_poked_ = false;
    bool mask_blocked_ = false;
    bool regs_touched_ = false;       // the thread's registers were changed
    bool ran_ = false;                // a syscall ran: the thread sits at a syscall stop
};

}  // namespace criu
