// Per-thread state of a seized thread, into a ThreadCore.
#pragma once

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/remote_syscalls.h"
#include "criu/core/task.h"
#include "criu/dump/core_image.h"

namespace criu {

// What ptrace and /proc give without running code in the thread: registers as they were at the
// seize stop (gpregs after the syscall-restart fix-up, and rip moved to the abort handler when
// stopped inside an rseq critical section; orig_rax and raw rax kept apart), the raw XSAVE
// buffer, signal mask, the thread's own pending signals, rseq registration, robust list,
// scheduling policy/priority/nice and comm. Must run before any RemoteSyscalls scope.
Status dump_thread_ptrace_state(Task& task, images::ThreadCore& out, Log& log);

// What needs code in the thread: its sigaltstack and its clear_child_tid (PR_GET_TID_ADDRESS).
// `rs` must be a scope on this very thread.
Status dump_thread_remote_state(RemoteSyscalls& rs, images::ThreadCore& out);

}  // namespace criu
