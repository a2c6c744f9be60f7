// Semaphore undo adjustments (semadj): what semop(2) with SEM_UNDO records per process and the
// kernel applies to the semaphores when the process exits. Dumped for a process in its own IPC
// namespace (sysv_ipc.h), restored before the process runs again.
//
// The kernel has no interface that reads an undo list (CRIU has never dumped it, its issue #47).
// It is found out with semop itself, run inside the seized process (RemoteSyscalls), without
// changing anything: one semop call carries several operations on the same semaphore, which the
// kernel performs one after the other on the running value (perform_atomic_semop_slow in
// ipc/sem.c) and takes back entirely when one fails. The first operations move the value to the
// top or the bottom of its range without SEM_UNDO, the next one with SEM_UNDO asks the kernel to
// move semadj by a chosen amount, and a last one can never succeed (IPC_NOWAIT, a decrement
// below 0). The call fails with ERANGE when semadj would leave [-32768, 32767] and with EAGAIN
// otherwise: a threshold test on semadj. Sixteen of them (binary search) give its value; two
// tell zero (most semaphores) from non-zero.
//
// Restore runs, in the restored process, one semop per semaphore that adds and takes back the
// same amount with SEM_UNDO on one side only: the value stays, semadj becomes the dumped one.
//
// A process without an undo list (kcmp KCMP_SYSVSEM against criu, which never uses SEM_UNDO,
// gives 0) is not probed. A process in criu's IPC namespace is not probed either (its
// semaphores are not dumped; a warning names it). An undo list shared by two processes
// (clone(CLONE_SYSVSEM) without CLONE_THREAD) is restored as one list per process.
#pragma once

#include <sys/types.h>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/remote_syscalls.h"
#include "criu/dump/core_image.h"  // proto/core.pb.h without glibc's sigmask macro

namespace criu {

// Fills core.sem_undo with the non-zero adjustments of the seized process `pid`; `rs` runs in
// its main thread (whose undo list its threads share).
Status dump_semadj(pid_t pid, RemoteSyscalls& rs, images::TaskCore& core, Log& log);

// Hostile-image checks of core.sem_undo: ids, semaphore numbers, range, duplicates, count.
Status validate_semadj(const images::TaskCore& core);

// In the restored process, once its IPC namespace holds the semaphore sets and before anything
// of the process runs: sets every adjustment of core.sem_undo, leaving the values as they are.
Status restore_semadj(const images::TaskCore& core);

}  // namespace criu
