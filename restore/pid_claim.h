// Getting the dumped PID back: clone3 with set_tid (KERNEL-NOTES section 5). A PID in use is
// explained (who holds it: a running process, a thread of one, a zombie nobody reaped yet);
// a PID held by a process that is exiting or a zombie about to be reaped (the dump killed it
// and PID 1 reaps slowly) is waited for briefly instead of failing with EEXIST.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"

namespace criu {

// PID 1 here reaps a killed dump's zombie only after ~1.6 s (measured); on a loaded machine more.
inline constexpr std::chrono::milliseconds kPidWaitLimit{5000};

struct PidHolder {
    bool exists = false;
    bool exiting = false;  // zombie, dead, or vanishing while we looked
    pid_t tgid = 0;
    pid_t ppid = 0;
    char state = '?';
    std::string comm;
    std::string describe(pid_t pid) const;  // "pid 42 is used by process 42 (sleep), state S"
};

// What /proc says about whoever holds `pid` now.
PidHolder find_pid_holder(pid_t pid);

// Waits (up to `limit`) until `pid` is free; fails naming the holder if it stays taken.
// `what` is "pid" or "tid" for the message.
Status wait_pid_free(pid_t pid, const char* what, Log& log,
                     std::chrono::milliseconds limit = kPidWaitLimit);

// fork() that gives the child the PID `pid` (clone3 set_tid, exit signal SIGCHLD, a pidfd).
// Returns 0 in the child, like fork(); in the parent, the pid, with `pidfd` set. Safe to call
// from a multi-threaded process: the clone3 runs in a fork()ed helper (see pid_claim.cc).
// A pid held by a zombie or an exiting process is retried for up to kPidWaitLimit.
// `share_flags` (CLONE_FILES, CLONE_FS): the child shares the caller's fd table or fs. Then
// clone3 runs in the caller itself (a helper's table would be shared instead), which must be
// single-threaded (a restoring process is: a fork of criu).
Expected<pid_t> fork_with_pid(pid_t pid, UniqueFd& pidfd, Log& log, uint64_t share_flags = 0);

}  // namespace criu
