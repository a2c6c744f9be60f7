// Phase 4: letting the restored threads go and removing the blob area behind them.
//
// Every thread sits in the blob waiting for go. criu seizes them all, writes the go byte and
// follows each one from syscall stop to syscall stop until its rt_sigreturn has returned
// (the syscall-exit stop of rt_sigreturn: registers, FPU state, mask and altstack are the
// dumped ones, nothing of the process has run yet). Only when no thread can still be inside
// the blob is the area unmapped: the main thread is pointed at the blob's own syscall
// instruction with all signals blocked, runs munmap, and gets its registers and mask back.
// Then every thread is detached and runs on.
//
// This does not use RemoteSyscalls (criu/core): that scope writes code over the process's
// text to map its own area, while here a syscall instruction is already mapped (in the very
// area being removed) and the threads are already at syscall stops.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"

namespace criu {

class SigreturnCatcher {
public:
    // Seizes every thread (all parked in the blob) and stops them.
    static Expected<SigreturnCatcher> seize(pid_t pid, const std::vector<pid_t>& tids, Log& log);

    // Writes the go byte, runs every thread to the end of its rt_sigreturn (checking that it
    // landed at its dumped rip), unmaps [area_start, area_end) from the main thread and
    // detaches all. `on_idle` is called between waits (criu reads the report pipe there); an
    // error from it aborts. If the process dies on the way, the error says how and
    // `exit_status()` holds its wait status.
    Status release(int go_fd, uint64_t area_start, uint64_t area_end, uint64_t syscall_insn,
                   const std::map<pid_t, uint64_t>& expected_rip, const std::function<Status()>& on_idle);

    // Wait status of the process if it died while traced (its exit was reaped here).
    std::optional<int> exit_status() const { return exit_status_; }

    SigreturnCatcher(SigreturnCatcher&&) noexcept = default;
    SigreturnCatcher& operator=(SigreturnCatcher&&) noexcept = default;
    // Detaches whatever is still attached (on error paths the caller kills the process).
    ~SigreturnCatcher();

private:
    SigreturnCatcher(pid_t pid, Log& log) : pid_(pid), log_(&log) {}
    enum class State { Running, InSigreturn, Done, Gone };
    Status handle_stop(pid_t tid, int status);
    Status unmap_area(uint64_t area_start, uint64_t area_end, uint64_t syscall_insn);
    void detach_all();

    pid_t pid_ = 0;
    Log* log_ = nullptr;
    std::map<pid_t, State> threads_;
    std::optional<int> exit_status_;
    std::map<pid_t, uint64_t> expected_rip_;
};

}  // namespace criu
