/* Raw x86-64 syscalls for the freestanding restorer blob: no libc, no errno. Every call returns
 * the kernel's value, a negative errno on failure. Numbers and constants are from the kernel's
 * uapi (arch/x86/entry/syscalls/syscall_64.tbl); the system headers here are 6.1, so the few
 * newer ones are spelled out. */
#ifndef CRIU_RESTORE_BLOB_SYS_H
#define CRIU_RESTORE_BLOB_SYS_H

#include <stddef.h>
#include <stdint.h>

#include "criu/core/clone3_args.h"

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_mmap 9
#define NR_mprotect 10
#define NR_munmap 11
#define NR_rt_sigaction 13
#define NR_rt_sigprocmask 14
#define NR_rt_sigreturn 15
#define NR_pread64 17
#define NR_mremap 25
#define NR_madvise 28
#define NR_shmat 30
#define NR_shmctl 31
#define NR_setitimer 38
#define NR_getpid 39
#define NR_exit 60
#define NR_setresuid 117
#define NR_setresgid 119
#define NR_setfsuid 122
#define NR_setfsgid 123
#define NR_setgroups 116
#define NR_capset 126
#define NR_sigaltstack 131
#define NR_setpriority 141
#define NR_sched_setscheduler 144
#define NR_prctl 157
#define NR_arch_prctl 158
#define NR_gettid 186
#define NR_futex 202
#define NR_io_setup 206
#define NR_io_destroy 207
#define NR_io_getevents 208
#define NR_io_submit 209
#define NR_set_tid_address 218
#define NR_timer_create 222
#define NR_timer_settime 223
#define NR_exit_group 231
#define NR_rt_tgsigqueueinfo 297
#define NR_set_robust_list 273
#define NR_rt_sigqueueinfo 129
#define NR_seccomp 317
#define NR_userfaultfd 323
#define NR_ioctl 16
#define NR_rseq 334
#define NR_clone3 435

#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define MAP_FIXED 0x10
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define MADV_DONTFORK 10
#define MADV_MERGEABLE 12
#define MADV_HUGEPAGE 14
#define MADV_NOHUGEPAGE 15
#define MADV_DONTDUMP 16
#define MADV_WIPEONFORK 18
#define MADV_GUARD_INSTALL 102 /* 6.13 */
#define SIG_SETMASK 2
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define RSEQ_FLAG_UNREGISTER 1
#define PR_SET_PDEATHSIG 1
#define PR_SET_DUMPABLE 4
#define PR_SET_NAME 15
#define PR_CAPBSET_DROP 24
#define PR_SET_SECUREBITS 28
#define PR_SET_TIMERSLACK 29
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define PR_SET_NO_NEW_PRIVS 38
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_TIMER_CREATE_RESTORE_IDS 77 /* 6.15 */
#define SECBIT_NO_SETUID_FIXUP (1u << 2)
#define SECCOMP_SET_MODE_FILTER 1
#define PRIO_PROCESS 0
#define CLONE_VM 0x00000100ull
#define CLONE_FS 0x00000200ull
#define CLONE_FILES 0x00000400ull
#define CLONE_SIGHAND 0x00000800ull
#define CLONE_THREAD 0x00010000ull
#define CLONE_SYSVSEM 0x00040000ull
#define EINTR 4
#define EAGAIN 11
#define EINVAL 22
#define EPIPE 32

static inline long sys_call6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define SYS0(n) sys_call6((n), 0, 0, 0, 0, 0, 0)
#define SYS1(n, a) sys_call6((n), (long)(a), 0, 0, 0, 0, 0)
#define SYS2(n, a, b) sys_call6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define SYS3(n, a, b, c) sys_call6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define SYS4(n, a, b, c, d) sys_call6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define SYS5(n, a, b, c, d, e) sys_call6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define SYS6(n, a, b, c, d, e, f) \
    sys_call6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* In blob_entry.S: clone3 a thread that starts on its own stack in fn(arg, idx) and never
 * returns; the caller gets the new tid or a negative errno. */
long blob_clone3_thread(struct criu_clone_args* ca, uint64_t size, void (*fn)(void*, uint64_t),
                        void* arg, uint64_t idx);
/* In blob_entry.S: rsp = frame + 8; rt_sigreturn. */
__attribute__((noreturn)) void blob_sigreturn(uint64_t frame);

#endif
