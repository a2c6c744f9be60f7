/* The contract between criu (C++, phase 1/2) and the freestanding restorer blob (C, phase 3).
 *
 * One plain argument area, copied by the restored child into the blob area at a fixed address.
 * Everything inside it is found by byte offsets from the start of `struct blob_args`, never by
 * pointers, so the builder can lay it out before it knows where the area will live. The only
 * absolute addresses are the ones the kernel must see (sigframes, stacks, fpstate), and those
 * the builder computes for the chosen base address.
 *
 * Included by C (-ffreestanding) and C++: fixed-width types only, explicit padding, sizes
 * checked on both sides. */
#ifndef CRIU_RESTORE_BLOB_ABI_H
#define CRIU_RESTORE_BLOB_ABI_H

#include <stdint.h>

#define BLOB_ARGS_MAGIC 0x31424c4255495243ull /* "CRIUBLB1" */
#define BLOB_REPORT_MAGIC 0x54504552u         /* "REPT" */
#define BLOB_PAGE_SIZE 4096ull
/* Upper end of the 47-bit user address space (DEFAULT_MAP_WINDOW); nothing is placed above
 * it without an explicit hint, and phase 1 refuses images that have VMAs above it. */
#define BLOB_TASK_SIZE 0x7ffffffff000ull

/* Stack of each blob thread but the main one (clone3 stack_size). The per-thread work is a few
 * syscalls with small frames; the XSAVE sigframe is prebuilt in the args, not on the stack. */
#define BLOB_THREAD_STACK_SIZE 0x4000ull
#define BLOB_MAIN_STACK_SIZE 0x8000ull

/* Exit code of a restored process whose restorer failed; the report says why. */
#define BLOB_FAIL_EXIT_CODE 86

/* Offset of a `syscall` instruction in the blob binary (blob_entry.S). */
#define BLOB_SYSCALL_INSN_OFFSET 8

/* Fixed service fd slots; the rest of the fd table is pages files and mapped files. */
#define BLOB_FD_REPORT 0 /* write end of the pipe criu reads reports from */
#define BLOB_FD_GO 1     /* read end of the pipe criu writes the go byte into */
#define BLOB_FD_FIRST_DATA 2

/* Where a restore stopped: reported with the errno and a detail (index, signal, tid). The
 * names used in messages live in restore/blob_report.cc; keep the two in step. */
enum blob_step {
    BLOB_STEP_NONE = 0,
    BLOB_STEP_CHILD_SETUP, /* libc side of the restored child: message in blob_report.msg */
    BLOB_STEP_ENTRY,
    BLOB_STEP_RSEQ_UNREGISTER,
    BLOB_STEP_VDSO_PARK,
    BLOB_STEP_UNMAP_RESTORER,
    BLOB_STEP_VDSO_PLACE,
    BLOB_STEP_VMA_MAP,     /* detail: vma index */
    BLOB_STEP_VMA_MADVISE, /* detail: vma index */
    BLOB_STEP_PAGES_READ,  /* detail: run index */
    BLOB_STEP_VMA_PROTECT, /* detail: vma index */
    BLOB_STEP_GUARD_INSTALL,
    BLOB_STEP_MM_MAP,
    BLOB_STEP_SIGACTION, /* detail: signal number */
    BLOB_STEP_ITIMER,    /* detail: which */
    BLOB_STEP_DUMPABLE,
    BLOB_STEP_THREAD_CLONE,  /* tid: the thread that could not be created */
    BLOB_STEP_POSIX_TIMER,   /* detail: timer id */
    BLOB_STEP_SIGQUEUE,      /* detail: signal number */
    BLOB_STEP_TID_ADDRESS,
    BLOB_STEP_ROBUST_LIST,
    BLOB_STEP_SIGALTSTACK,
    BLOB_STEP_COMM,
    BLOB_STEP_SCHED,
    BLOB_STEP_NICE,
    BLOB_STEP_TIMERSLACK,
    BLOB_STEP_FS_BASE,
    BLOB_STEP_GS_BASE,
    BLOB_STEP_RSEQ_REGISTER,
    BLOB_STEP_CREDS_GROUPS,
    BLOB_STEP_CREDS_GID,
    BLOB_STEP_CREDS_UID,
    BLOB_STEP_CREDS_BOUNDING, /* detail: capability */
    BLOB_STEP_CREDS_SECUREBITS,
    BLOB_STEP_CREDS_CAPS,
    BLOB_STEP_CREDS_AMBIENT, /* detail: capability */
    BLOB_STEP_NO_NEW_PRIVS,
    BLOB_STEP_PDEATHSIG,
    BLOB_STEP_GO_WAIT,
    BLOB_STEP_SECCOMP, /* detail: filter index */
    BLOB_STEP_READY,   /* not an error: every thread is prepared, waiting for go */
    BLOB_STEP_DONE,    /* not an error: every thread passed its last fallible step */
    BLOB_STEP_LAZY_UFFD,  /* not an error: detail is the userfaultfd criu hands to lazy-pages */
    BLOB_STEP_UFFD_SETUP, /* detail: lazy range index, or ~0 for the fd and its API */
    BLOB_STEP_COUNT
};

/* One message on the report pipe. 256 bytes: below PIPE_BUF, so writes from several threads
 * never interleave. */
struct blob_report {
    uint32_t magic;
    uint32_t step;   /* enum blob_step */
    int32_t err;     /* positive errno, 0 for READY/DONE */
    int32_t tid;     /* thread that reports */
    uint64_t detail; /* see enum blob_step */
    char msg[232];   /* NUL-terminated; only the libc side fills it */
};

/* blob_vma.madv bits: madvise() calls that recreate VmFlags the dump recorded (Vma.madvise
 * uses the same bit numbers). */
#define BLOB_MADV_DONTFORK (1u << 0)
#define BLOB_MADV_DONTDUMP (1u << 1)
#define BLOB_MADV_HUGEPAGE (1u << 2)
#define BLOB_MADV_NOHUGEPAGE (1u << 3)
#define BLOB_MADV_WIPEONFORK (1u << 4)
#define BLOB_MADV_MERGEABLE (1u << 5)

struct blob_vma {
    uint64_t start;
    uint64_t end;
    uint64_t pgoff;     /* file offset in bytes */
    uint32_t prot;      /* final PROT_* */
    uint32_t map_prot;  /* PROT_* used while filling (prot | PROT_WRITE when pages are read in) */
    uint32_t map_flags; /* MAP_* without MAP_FIXED */
    int32_t fd_slot;    /* index into the fd table, -1 for anonymous memory */
    uint32_t madv;      /* BLOB_MADV_* */
    uint32_t sysv;      /* BLOB_SYSV_*: a System V segment (id in pgoff), attached with shmat */
};

/* blob_vma.sysv bits. */
#define BLOB_SYSV_SHM (1u << 0)    /* shmat(pgoff, start, ...) instead of mmap */
#define BLOB_SYSV_RDONLY (1u << 1) /* SHM_RDONLY: the attach could never be written */
#define BLOB_SYSV_RMID (1u << 2)   /* the segment was removed (IPC_RMID) before the dump */

/* A run of pages to fill: read from a service fd, or (fd_slot -1) write zeros, needed only
 * where a fresh mapping would not already read as zero (COWed pages of a private file).
 * direct_slot (-1: none) is the same file opened with O_DIRECT, preferred when set. */
struct blob_page_run {
    uint64_t vaddr;
    uint64_t nr_pages;
    uint64_t file_off;
    int32_t fd_slot;
    int32_t direct_slot;
};

struct blob_range {
    uint64_t start;
    uint64_t end;
};

/* The kernel's x86-64 struct sigaction for rt_sigaction(2) (not glibc's). */
struct blob_sigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

/* struct itimerval */
struct blob_itimer {
    int64_t interval_sec;
    int64_t interval_usec;
    int64_t value_sec;
    int64_t value_usec;
};

struct blob_posix_timer {
    int32_t id;
    int32_t clock_id;
    int32_t sigev_notify;
    int32_t signo;
    uint64_t sigval;
    int32_t notify_tid;
    uint32_t pad;
    uint64_t value_ns; /* time remaining; 0 leaves the timer disarmed */
    uint64_t interval_ns;
};

struct blob_seccomp_filter {
    uint32_t flags;    /* SECCOMP_FILTER_FLAG_* (never TSYNC: every thread installs its own) */
    uint32_t nr_insns; /* struct sock_filter entries, 8 bytes each */
    uint64_t insns_off;
};

struct blob_creds {
    uint32_t uid, euid, suid, fsuid;
    uint32_t gid, egid, sgid, fsgid;
    uint32_t ngroups;
    uint32_t groups_off; /* uint32_t[ngroups] */
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t securebits;
    uint32_t last_cap; /* /proc/sys/kernel/cap_last_cap of this kernel */
    /* Installing a filter without no_new_privs needs CAP_SYS_ADMIN; when the restored
     * capabilities lack it, the filters go in before the final capset. */
    uint32_t caps_after_seccomp;
    uint32_t enabled; /* 0: the dump has no credentials; keep the restorer's */
};

struct blob_thread {
    int32_t tid;
    uint32_t pad0;
    uint64_t frame;      /* absolute address of the prebuilt rt_sigframe */
    uint64_t stack_top;  /* absolute, 16-byte aligned (threads other than the main one) */
    uint64_t fs_base;
    uint64_t gs_base;
    uint64_t clear_child_tid;
    uint64_t robust_list;
    uint64_t robust_list_len;
    uint64_t rseq_ptr;
    uint32_t rseq_len;
    uint32_t rseq_sig;
    uint64_t altstack_sp;
    uint64_t altstack_size;
    int32_t altstack_flags;
    int32_t sched_policy; /* with SCHED_RESET_ON_FORK or'ed in */
    int32_t sched_priority;
    int32_t nice;
    uint32_t pending_off; /* 128-byte siginfos queued to this thread */
    uint32_t nr_pending;
    char comm[16];
};

/* struct prctl_mm_map without its auxv pointer, which the blob fills in. */
struct blob_mm {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint32_t auxv_off;  /* uint64_t[] inside the args */
    uint32_t auxv_size; /* bytes */
    int32_t exe_fd_slot; /* -1: leave /proc/PID/exe alone */
    uint32_t pad;
};

#define BLOB_MAX_VDSO_PARTS 4

/* One VMA of the vDSO block ([vvar], [vvar_vclock], [vdso]). */
struct blob_vdso_part {
    uint64_t cur_start; /* where it is in the restorer now */
    uint64_t size;
    uint64_t offset; /* from the start of the block, same in the restorer and the target */
};

struct blob_args {
    uint64_t magic;
    uint64_t args_size; /* bytes of this struct plus every array it points to */
    uint64_t area_start; /* the whole blob area: code, args, stacks, vDSO parking */
    uint64_t area_end;
    int32_t pid;
    uint32_t nr_threads;

    /* The restorer's own glibc rseq registration (0 if none). */
    uint64_t own_rseq_ptr;
    uint32_t own_rseq_len;
    uint32_t own_rseq_sig;

    uint32_t nr_vdso_parts;
    uint32_t vdso_in_target; /* 0: the dumped process had no vDSO, drop ours */
    uint64_t vdso_park;      /* block start inside the blob area while the rest is unmapped */
    uint64_t vdso_target;    /* block start the process expects */
    struct blob_vdso_part vdso_parts[BLOB_MAX_VDSO_PARTS];

    uint32_t fds_off; /* int32_t[nr_fds]: the service fd table, filled in by the child */
    uint32_t nr_fds;
    uint32_t vmas_off;
    uint32_t nr_vmas;
    uint32_t runs_off;
    uint32_t nr_runs;
    uint32_t guards_off; /* struct blob_range[] (MADV_GUARD_INSTALL) */
    uint32_t nr_guards;
    uint32_t threads_off;
    uint32_t timers_off;
    uint32_t nr_timers;
    uint32_t shared_pending_off; /* 128-byte siginfos for the process-wide queue */
    uint32_t nr_shared_pending;
    uint32_t seccomp_off;
    uint32_t nr_seccomp;
    /* struct blob_range[]: VMAs left empty for post-copy (--lazy-pages), registered with a
     * userfaultfd that criu passes to the lazy-pages daemon. */
    uint32_t lazy_off;
    uint32_t nr_lazy;
    uint32_t pad0;

    struct blob_mm mm;
    uint64_t sigaction_valid; /* bit (signo-1) set: restore sigactions[signo-1] */
    struct blob_sigaction sigactions[64];
    uint32_t itimer_valid; /* bit per ITIMER_REAL/VIRTUAL/PROF */
    uint32_t pad1;
    struct blob_itimer itimers[3];
    struct blob_creds creds;

    int32_t dumpable;     /* -1: leave as is */
    int32_t pdeath_signal;
    uint32_t no_new_privs;
    uint32_t pad2;
    uint64_t timerslack_ns; /* 0: leave as is */

    /* futex words shared by the blob's threads */
    uint32_t threads_ready;
    uint32_t threads_past_seccomp;
    uint32_t go;
    uint32_t pad3;
};

#ifdef __cplusplus
static_assert(sizeof(struct blob_report) == 256);
static_assert(sizeof(struct blob_vma) == 48);
static_assert(sizeof(struct blob_page_run) == 32);
static_assert(sizeof(struct blob_thread) == 136);
static_assert(sizeof(struct blob_posix_timer) == 48);
#else
_Static_assert(sizeof(struct blob_report) == 256, "report size");
_Static_assert(sizeof(struct blob_vma) == 48, "vma size");
_Static_assert(sizeof(struct blob_page_run) == 32, "run size");
_Static_assert(sizeof(struct blob_thread) == 136, "thread size");
_Static_assert(sizeof(struct blob_posix_timer) == 48, "timer size");
#endif

#endif
