// Process-wide state of a seized process: TaskCore (without its threads), FsInfo and the
// MmInfo fields that do not come from the VMA list.
#pragma once

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/proc_parse.h"
#include "criu/core/remote_syscalls.h"
#include "criu/core/seized_process.h"
#include "criu/dump/core_image.h"
#include "proto/files.pb.h"
#include "proto/mm.pb.h"

namespace criu {

// Refusals that need no stopping (seccomp strict mode, zombie or traced process, ...), for the
// pre-flight and --dry-run. Lists everything found in one error.
Status preflight_process(pid_t pid);

// Signal actions (rt_sigaction, run inside), shared pending signals, itimers and POSIX timers
// (getitimer / timer_gettime inside), rlimits (prlimit), creds and caps (status, securebits
// inside), personality, umask, no_new_privs, seccomp filters, pdeath signal, timerslack,
// dumpable, child subreaper, exit signal. `rs` is a scope on the main thread.
Status dump_process_state(SeizedProcess& sp, RemoteSyscalls& rs, const ProcStat& stat, const ProcStatus& status,
                          images::TaskCore& core, Log& log);

// cwd and root as the target sees them.
Status dump_fs_info(pid_t pid, images::FsInfo& fs);

// Code/data/brk/stack/arg/env bounds, auxv and exe. brk is asked of the process (brk(0)), since
// /proc shows only start_brk.
Status dump_mm_fields(pid_t pid, RemoteSyscalls& rs, const ProcStat& stat, images::MmInfo& mm);

}  // namespace criu
