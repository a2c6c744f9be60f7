/* struct clone_args of clone3(2), version 2: 88 bytes, set_tid since 5.5, cgroup since 5.7
 * (include/uapi/linux/sched.h). glibc has no clone3 wrapper and the Debian 12 (6.1) headers
 * lack set_tid, so criu spells it out once, in C, for the freestanding restorer blob (which
 * creates the threads) as well as for the C++ side (which creates the processes). */
#ifndef CRIU_CORE_CLONE3_ARGS_H
#define CRIU_CORE_CLONE3_ARGS_H

#include <stdint.h>

struct criu_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

#ifdef __cplusplus
static_assert(sizeof(criu_clone_args) == 88, "clone_args version 2");
#else
_Static_assert(sizeof(struct criu_clone_args) == 88, "clone_args version 2");
#endif

#endif
