/* The restorer blob: runs inside the restored process after the libc side has set up fds,
 * cwd and limits, replaces the restorer's address space with the dumped one, recreates the
 * threads and ends every thread in rt_sigreturn with its dumped registers and XSAVE state.
 *
 * Freestanding: no libc, raw syscalls only, no writable globals (the code is mapped
 * read-execute). Everything comes from struct blob_args (blob_abi.h). The sequence follows
 * KERNEL-NOTES section 5, which was verified end to end on 6.18.
 *
 * Any failure writes a struct blob_report (step, errno, detail) to the report pipe and ends
 * the whole process with exit_group: criu then kills what is left and names the step. */
#include "blob_abi.h"
#include "blob_sys.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define AT(a, off, type) ((type*)((char*)(a) + (off)))

/* GCC may emit calls to these for struct copies and zeroing even when freestanding. */
HIDDEN void* memset(void* dst, int c, size_t n) {
    unsigned char* d = (unsigned char*)dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

HIDDEN void* memcpy(void* dst, const void* src, size_t n) {
    unsigned char* d = (unsigned char*)dst;
    const unsigned char* s = (const unsigned char*)src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static int32_t fd_at(struct blob_args* a, int32_t slot) {
    if (slot < 0 || (uint32_t)slot >= a->nr_fds)
        return -1;
    return AT(a, a->fds_off, int32_t)[slot];
}

static void report(struct blob_args* a, uint32_t step, long err, uint64_t detail) {
    struct blob_report r;
    memset(&r, 0, sizeof(r));
    r.magic = BLOB_REPORT_MAGIC;
    r.step = step;
    r.err = (int32_t)(err < 0 ? -err : err);
    r.tid = (int32_t)SYS0(NR_gettid);
    r.detail = detail;
    /* A short or failed write leaves criu with EOF and the exit status, which it reports. */
    SYS3(NR_write, fd_at(a, BLOB_FD_REPORT), &r, sizeof(r));
}

static __attribute__((noreturn)) void die(struct blob_args* a, uint32_t step, long err,
                                          uint64_t detail) {
    report(a, step, err, detail);
    for (;;)
        SYS1(NR_exit_group, BLOB_FAIL_EXIT_CODE);
}

#define CHECK(expr, step, detail)                    \
    do {                                             \
        long r_ = (long)(expr);                      \
        if (r_ < 0)                                  \
            die(a, (step), r_, (uint64_t)(detail));  \
    } while (0)

/* mmap/mremap return an address; only -4095..-1 are errors. */
static int is_err_addr(long r) { return r < 0 && r > -4096; }

static void expect_addr(struct blob_args* a, long r, uint64_t want, uint32_t step, uint64_t detail) {
    if (is_err_addr(r))
        die(a, step, r, detail);
    if ((uint64_t)r != want)
        die(a, step, -EINVAL, detail);
}

static void futex_wake_all(uint32_t* w) { SYS6(NR_futex, w, FUTEX_WAKE, 0x7fffffff, 0, 0, 0); }

static void bump(uint32_t* w) {
    __atomic_add_fetch(w, 1, __ATOMIC_SEQ_CST);
    futex_wake_all(w);
}

static void wait_at_least(uint32_t* w, uint32_t want) {
    for (;;) {
        uint32_t v = __atomic_load_n(w, __ATOMIC_SEQ_CST);
        if (v >= want)
            return;
        SYS6(NR_futex, w, FUTEX_WAIT, v, 0, 0, 0);
    }
}

/* Moves every vDSO VMA one at a time (moving [vdso] without its data pages crashes it: its
 * code reads [vvar] at a fixed negative offset), keeping the block's relative layout. */
static void move_vdso(struct blob_args* a, int to_target) {
    for (uint32_t i = 0; i < a->nr_vdso_parts && i < BLOB_MAX_VDSO_PARTS; i++) {
        struct blob_vdso_part* p = &a->vdso_parts[i];
        uint64_t from = to_target ? a->vdso_park + p->offset : p->cur_start;
        uint64_t to = to_target ? a->vdso_target + p->offset : a->vdso_park + p->offset;
        uint32_t step = to_target ? BLOB_STEP_VDSO_PLACE : BLOB_STEP_VDSO_PARK;
        long r = SYS5(NR_mremap, from, p->size, p->size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        expect_addr(a, r, to, step, i);
    }
}

static void drop_parked_vdso(struct blob_args* a) {
    for (uint32_t i = 0; i < a->nr_vdso_parts && i < BLOB_MAX_VDSO_PARTS; i++) {
        struct blob_vdso_part* p = &a->vdso_parts[i];
        CHECK(SYS2(NR_munmap, a->vdso_park + p->offset, p->size), BLOB_STEP_VDSO_PLACE, i);
    }
}

/* Everything of the restorer outside the blob area goes: its binary, libc, heap, stack.
 * munmap over holes is fine, and [vsyscall] lies above the user address space. */
static void unmap_restorer(struct blob_args* a) {
    CHECK(SYS2(NR_munmap, 0, a->area_start), BLOB_STEP_UNMAP_RESTORER, 0);
    if (a->area_end < BLOB_TASK_SIZE)
        CHECK(SYS2(NR_munmap, a->area_end, BLOB_TASK_SIZE - a->area_end), BLOB_STEP_UNMAP_RESTORER,
              1);
}

static void apply_madvise(struct blob_args* a, struct blob_vma* v, uint32_t idx) {
    uint64_t len = v->end - v->start;
    if (v->madv & BLOB_MADV_DONTFORK)
        CHECK(SYS3(NR_madvise, v->start, len, MADV_DONTFORK), BLOB_STEP_VMA_MADVISE, idx);
    if (v->madv & BLOB_MADV_DONTDUMP)
        CHECK(SYS3(NR_madvise, v->start, len, MADV_DONTDUMP), BLOB_STEP_VMA_MADVISE, idx);
    if (v->madv & BLOB_MADV_WIPEONFORK)
        CHECK(SYS3(NR_madvise, v->start, len, MADV_WIPEONFORK), BLOB_STEP_VMA_MADVISE, idx);
    /* Hugepage hints and KSM are advisory and may be compiled out of this kernel (EINVAL):
     * the process behaves the same without them. */
    if (v->madv & BLOB_MADV_HUGEPAGE)
        SYS3(NR_madvise, v->start, len, MADV_HUGEPAGE);
    if (v->madv & BLOB_MADV_NOHUGEPAGE)
        SYS3(NR_madvise, v->start, len, MADV_NOHUGEPAGE);
    if (v->madv & BLOB_MADV_MERGEABLE)
        SYS3(NR_madvise, v->start, len, MADV_MERGEABLE);
}

static void map_vmas(struct blob_args* a) {
    struct blob_vma* vmas = AT(a, a->vmas_off, struct blob_vma);
    for (uint32_t i = 0; i < a->nr_vmas; i++) {
        struct blob_vma* v = &vmas[i];
        if (v->sysv & BLOB_SYSV_SHM) {
            /* SHM_RDONLY 010000, SHM_EXEC 0100000 (linux/shm.h); IPC_RMID 0 */
            long flg = ((v->sysv & BLOB_SYSV_RDONLY) ? 010000 : 0) | ((v->prot & PROT_EXEC) ? 0100000 : 0);
            long r = SYS3(NR_shmat, v->pgoff, v->start, flg);
            expect_addr(a, r, v->start, BLOB_STEP_VMA_MAP, i);
            /* Removed again once attached: it lives on while attached, as it did. */
            if (v->sysv & BLOB_SYSV_RMID)
                SYS3(NR_shmctl, v->pgoff, 0, 0);
            apply_madvise(a, v, i);
            continue;
        }
        int32_t fd = v->fd_slot >= 0 ? fd_at(a, v->fd_slot) : -1;
        long r = SYS6(NR_mmap, v->start, v->end - v->start, v->map_prot, v->map_flags | MAP_FIXED,
                      fd, v->pgoff);
        expect_addr(a, r, v->start, BLOB_STEP_VMA_MAP, i);
        apply_madvise(a, v, i);
    }
}

static void zero_fill(uint64_t addr, uint64_t len) {
    volatile uint64_t* p = (volatile uint64_t*)addr;
    for (uint64_t n = len / 8; n; n--)
        *p++ = 0;
}

/* Reads [addr, addr+left) from fd at off; a failure names the run. With a direct fd first,
 * EINVAL (an alignment or filesystem the kernel refuses for O_DIRECT) falls back to `fd`. */
static void read_sync(struct blob_args* a, int32_t dfd, int32_t fd, uint64_t addr, uint64_t left,
                      uint64_t off, uint32_t run) {
    int32_t use = dfd >= 0 ? dfd : fd;
    while (left) {
        /* The kernel moves at most 0x7ffff000 bytes per read (MAX_RW_COUNT). */
        uint64_t chunk = left > (1ull << 30) ? (1ull << 30) : left;
        long n = SYS4(NR_pread64, use, addr, chunk, off);
        if (n == -EINTR)
            continue;
        if (n == -EINVAL && use != fd) {
            use = fd;
            continue;
        }
        if (n < 0)
            die(a, BLOB_STEP_PAGES_READ, n, run);
        if (n == 0) /* the pages file is shorter than phase 1 checked: it changed */
            die(a, BLOB_STEP_PAGES_READ, -61 /* ENODATA */, run);
        addr += (uint64_t)n;
        off += (uint64_t)n;
        left -= (uint64_t)n;
    }
}

/* Linux AIO (io_submit) for the O_DIRECT runs: the submitting call faults the target pages
 * in (the CPU part, fresh memory) and returns while the disk fills them, so faulting the next
 * chunk overlaps the transfer of the previous ones. A chunk that fails or comes back short
 * is read again synchronously, through the buffered fd if need be. */
#define AIO_DEPTH 8
#define AIO_CHUNK (8ull << 20)
#define IOCB_CMD_PREAD 0

struct blob_iocb { /* struct iocb, little-endian x86-64 */
    uint64_t data;
    uint32_t key;
    uint32_t rw_flags;
    uint16_t opcode;
    int16_t reqprio;
    uint32_t fildes;
    uint64_t buf;
    uint64_t nbytes;
    int64_t offset;
    uint64_t reserved2;
    uint32_t flags;
    uint32_t resfd;
};

struct blob_io_event {
    uint64_t data;
    uint64_t obj;
    int64_t res;
    int64_t res2;
};

struct aio_filler {
    uint64_t ctx;
    uint32_t inflight;
    uint8_t busy[AIO_DEPTH];
    struct blob_iocb cb[AIO_DEPTH];
};

static void aio_reap(struct blob_args* a, struct aio_filler* f, long min) {
    struct blob_page_run* runs = AT(a, a->runs_off, struct blob_page_run);
    struct blob_io_event ev[AIO_DEPTH];
    long n;
    do
        n = SYS5(NR_io_getevents, f->ctx, min, AIO_DEPTH, ev, 0);
    while (n == -EINTR);
    if (n < 0)
        die(a, BLOB_STEP_PAGES_READ, n, 0);
    for (long i = 0; i < n; i++) {
        struct blob_iocb* cb = (struct blob_iocb*)ev[i].obj;
        uint32_t run = (uint32_t)cb->data;
        uint64_t done = ev[i].res > 0 ? (uint64_t)ev[i].res : 0;
        if (done > cb->nbytes)
            done = cb->nbytes;
        if (done < cb->nbytes)
            read_sync(a, -1, fd_at(a, runs[run].fd_slot), cb->buf + done, cb->nbytes - done,
                      (uint64_t)cb->offset + done, run);
        f->busy[cb - f->cb] = 0;
        f->inflight--;
    }
}

static void aio_read(struct blob_args* a, struct aio_filler* f, int32_t dfd, uint64_t addr,
                     uint64_t left, uint64_t off, uint32_t run) {
    while (left) {
        uint64_t chunk = left > AIO_CHUNK ? AIO_CHUNK : left;
        if (f->inflight == AIO_DEPTH)
            aio_reap(a, f, 1);
        uint32_t k = 0;
        while (f->busy[k])
            k++;
        struct blob_iocb* cb = &f->cb[k];
        memset(cb, 0, sizeof(*cb));
        cb->data = run;
        cb->opcode = IOCB_CMD_PREAD;
        cb->fildes = (uint32_t)dfd;
        cb->buf = addr;
        cb->nbytes = chunk;
        cb->offset = (int64_t)off;
        struct blob_iocb* list[1] = {cb};
        long r = SYS3(NR_io_submit, f->ctx, 1, list);
        if (r == 1) {
            f->busy[k] = 1;
            f->inflight++;
        } else {
            struct blob_page_run* rr = &AT(a, a->runs_off, struct blob_page_run)[run];
            read_sync(a, dfd, fd_at(a, rr->fd_slot), addr, chunk, off, run);
        }
        addr += chunk;
        off += chunk;
        left -= chunk;
    }
}

static void fill_pages(struct blob_args* a) {
    struct blob_page_run* runs = AT(a, a->runs_off, struct blob_page_run);
    struct aio_filler f;
    memset(&f, 0, sizeof(f));
    int have_aio = 0;
    for (uint32_t i = 0; i < a->nr_runs && !have_aio; i++)
        if (runs[i].direct_slot >= 0)
            have_aio = SYS2(NR_io_setup, AIO_DEPTH, &f.ctx) == 0; /* else plain preads */
    for (uint32_t i = 0; i < a->nr_runs; i++) {
        struct blob_page_run* run = &runs[i];
        uint64_t len = run->nr_pages * BLOB_PAGE_SIZE;
        if (run->fd_slot < 0) {
            zero_fill(run->vaddr, len);
            continue;
        }
        int32_t fd = fd_at(a, run->fd_slot);
        int32_t dfd = run->direct_slot >= 0 ? fd_at(a, run->direct_slot) : -1;
        if (dfd >= 0 && have_aio)
            aio_read(a, &f, dfd, run->vaddr, len, run->file_off, i);
        else
            read_sync(a, dfd, fd, run->vaddr, len, run->file_off, i);
    }
    if (have_aio) {
        while (f.inflight)
            aio_reap(a, &f, f.inflight);
        /* Unmaps the ring the kernel placed in a hole of the new address space. */
        CHECK(SYS1(NR_io_destroy, f.ctx), BLOB_STEP_PAGES_READ, 0);
    }
}

/* Post-copy: the lazy VMAs stay empty and missing-page faults in them go to a userfaultfd,
 * created here because a uffd acts on the mm of its creator. Created before the credentials
 * change, while the process is still root: kernel-mode faults (a syscall touching a lazy
 * page) need a uffd without UFFD_USER_MODE_ONLY, which needs CAP_SYS_PTRACE. The events keep
 * the daemon's picture right when the process drops (MADV_DONTNEED), unmaps or moves
 * (mremap) memory that is not filled yet. Returns the fd, or -1 without lazy ranges. */
#define UFFD_API 0xAAull
#define UFFD_FEATURE_EVENT_REMAP (1ull << 2)
#define UFFD_FEATURE_EVENT_REMOVE (1ull << 3)
#define UFFD_FEATURE_EVENT_UNMAP (1ull << 6)
#define UFFDIO_API 0xc018aa3full
#define UFFDIO_REGISTER 0xc020aa00ull
#define UFFDIO_REGISTER_MODE_MISSING 1ull
#define O_CLOEXEC_FLAG 02000000

static int32_t register_lazy(struct blob_args* a) {
    if (!a->nr_lazy)
        return -1;
    long fd = SYS1(NR_userfaultfd, O_CLOEXEC_FLAG);
    CHECK(fd, BLOB_STEP_UFFD_SETUP, ~0ull);
    uint64_t api[3] = {UFFD_API, UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP, 0};
    CHECK(SYS3(NR_ioctl, fd, UFFDIO_API, api), BLOB_STEP_UFFD_SETUP, ~0ull);
    struct blob_range* r = AT(a, a->lazy_off, struct blob_range);
    for (uint32_t i = 0; i < a->nr_lazy; i++) {
        uint64_t reg[4] = {r[i].start, r[i].end - r[i].start, UFFDIO_REGISTER_MODE_MISSING, 0};
        CHECK(SYS3(NR_ioctl, fd, UFFDIO_REGISTER, reg), BLOB_STEP_UFFD_SETUP, i);
    }
    /* criu takes it with pidfd_getfd before it answers READY; closed with the service fds. */
    report(a, BLOB_STEP_LAZY_UFFD, 0, (uint64_t)fd);
    return (int32_t)fd;
}

static void protect_vmas(struct blob_args* a) {
    struct blob_vma* vmas = AT(a, a->vmas_off, struct blob_vma);
    for (uint32_t i = 0; i < a->nr_vmas; i++) {
        struct blob_vma* v = &vmas[i];
        if (v->map_prot != v->prot)
            CHECK(SYS3(NR_mprotect, v->start, v->end - v->start, v->prot), BLOB_STEP_VMA_PROTECT, i);
    }
    struct blob_range* g = AT(a, a->guards_off, struct blob_range);
    for (uint32_t i = 0; i < a->nr_guards; i++)
        CHECK(SYS3(NR_madvise, g[i].start, g[i].end - g[i].start, MADV_GUARD_INSTALL),
              BLOB_STEP_GUARD_INSTALL, i);
}

/* PR_SET_MM_MAP: after the restorer's binary is gone, or exe_fd gives EBUSY (6.18). */
static void set_mm(struct blob_args* a) {
    struct {
        uint64_t f[11];
        uint64_t auxv;
        uint32_t auxv_size;
        uint32_t exe_fd;
    } m;
    const struct blob_mm* mm = &a->mm;
    m.f[0] = mm->start_code;
    m.f[1] = mm->end_code;
    m.f[2] = mm->start_data;
    m.f[3] = mm->end_data;
    m.f[4] = mm->start_brk;
    m.f[5] = mm->brk;
    m.f[6] = mm->start_stack;
    m.f[7] = mm->arg_start;
    m.f[8] = mm->arg_end;
    m.f[9] = mm->env_start;
    m.f[10] = mm->env_end;
    m.auxv = (uint64_t)AT(a, mm->auxv_off, uint64_t);
    m.auxv_size = mm->auxv_size;
    m.exe_fd = mm->exe_fd_slot >= 0 ? (uint32_t)fd_at(a, mm->exe_fd_slot) : (uint32_t)-1;
    CHECK(SYS5(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &m, sizeof(m), 0), BLOB_STEP_MM_MAP, 0);
}

static void set_signals_and_itimers(struct blob_args* a) {
    for (uint32_t s = 1; s <= 64; s++) {
        if (!(a->sigaction_valid & (1ull << (s - 1))))
            continue;
        CHECK(SYS4(NR_rt_sigaction, s, &a->sigactions[s - 1], 0, 8), BLOB_STEP_SIGACTION, s);
    }
    for (uint32_t w = 0; w < 3; w++)
        if (a->itimer_valid & (1u << w))
            CHECK(SYS3(NR_setitimer, w, &a->itimers[w], 0), BLOB_STEP_ITIMER, w);
}

/* POSIX timers go in after every thread exists: SIGEV_THREAD_ID needs its target thread. */
static void create_posix_timers(struct blob_args* a) {
    if (!a->nr_timers)
        return;
    /* 6.15+: timer_create takes *timer_id as the id to use. */
    CHECK(SYS5(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0), BLOB_STEP_POSIX_TIMER, 0);
    struct blob_posix_timer* t = AT(a, a->timers_off, struct blob_posix_timer);
    for (uint32_t i = 0; i < a->nr_timers; i++) {
        struct {
            uint64_t value;
            int32_t signo;
            int32_t notify;
            int32_t tid;
            int32_t pad[11];
        } sev; /* the kernel's struct sigevent, 64 bytes */
        memset(&sev, 0, sizeof(sev));
        sev.value = t[i].sigval;
        sev.signo = t[i].signo;
        sev.notify = t[i].sigev_notify;
        sev.tid = t[i].notify_tid;
        int32_t id = t[i].id;
        CHECK(SYS3(NR_timer_create, t[i].clock_id, &sev, &id), BLOB_STEP_POSIX_TIMER, t[i].id);
        if (id != t[i].id)
            die(a, BLOB_STEP_POSIX_TIMER, -EINVAL, t[i].id);
        if (!t[i].value_ns)
            continue;
        int64_t its[4] = {(int64_t)(t[i].interval_ns / 1000000000ull),
                          (int64_t)(t[i].interval_ns % 1000000000ull),
                          (int64_t)(t[i].value_ns / 1000000000ull),
                          (int64_t)(t[i].value_ns % 1000000000ull)};
        CHECK(SYS4(NR_timer_settime, id, 0, its, 0), BLOB_STEP_POSIX_TIMER, t[i].id);
    }
    CHECK(SYS5(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0), BLOB_STEP_POSIX_TIMER, 0);
}

static void set_caps(struct blob_args* a) {
    const struct blob_creds* c = &a->creds;
    struct {
        uint32_t version;
        int32_t pid;
    } hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    uint32_t data[6] = {(uint32_t)c->cap_eff, (uint32_t)c->cap_prm, (uint32_t)c->cap_inh,
                        (uint32_t)(c->cap_eff >> 32), (uint32_t)(c->cap_prm >> 32),
                        (uint32_t)(c->cap_inh >> 32)};
    CHECK(SYS2(NR_capset, &hdr, data), BLOB_STEP_CREDS_CAPS, 0);
    for (uint32_t cap = 0; cap <= c->last_cap && cap < 64; cap++)
        if (c->cap_amb & (1ull << cap))
            CHECK(SYS5(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
                  BLOB_STEP_CREDS_AMBIENT, cap);
}

/* Credentials are per thread in the kernel (glibc broadcasts set*id; raw syscalls do not), so
 * every thread runs this. Order: with SECBIT_NO_SETUID_FIXUP the uid change keeps the
 * capabilities this needs for the rest (capabilities(7)); the bounding set and the final
 * securebits need CAP_SETPCAP, so they precede the final capset. */
static void set_creds(struct blob_args* a) {
    const struct blob_creds* c = &a->creds;
    if (!c->enabled)
        return;
    CHECK(SYS5(NR_prctl, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0),
          BLOB_STEP_CREDS_SECUREBITS, 0);
    CHECK(SYS2(NR_setgroups, c->ngroups, AT(a, c->groups_off, uint32_t)), BLOB_STEP_CREDS_GROUPS, 0);
    CHECK(SYS3(NR_setresgid, c->gid, c->egid, c->sgid), BLOB_STEP_CREDS_GID, 0);
    SYS1(NR_setfsgid, c->fsgid);
    if ((uint32_t)SYS1(NR_setfsgid, -1) != c->fsgid) /* setfsgid reports the old value only */
        die(a, BLOB_STEP_CREDS_GID, -EINVAL, 1);
    CHECK(SYS3(NR_setresuid, c->uid, c->euid, c->suid), BLOB_STEP_CREDS_UID, 0);
    SYS1(NR_setfsuid, c->fsuid);
    if ((uint32_t)SYS1(NR_setfsuid, -1) != c->fsuid)
        die(a, BLOB_STEP_CREDS_UID, -EINVAL, 1);
    for (uint32_t cap = 0; cap <= c->last_cap && cap < 64; cap++)
        if (!(c->cap_bnd & (1ull << cap)))
            CHECK(SYS5(NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0), BLOB_STEP_CREDS_BOUNDING, cap);
    CHECK(SYS5(NR_prctl, PR_SET_SECUREBITS, c->securebits, 0, 0, 0), BLOB_STEP_CREDS_SECUREBITS, 1);
    if (!c->caps_after_seccomp)
        set_caps(a);
}

static void install_seccomp(struct blob_args* a) {
    struct blob_seccomp_filter* f = AT(a, a->seccomp_off, struct blob_seccomp_filter);
    for (uint32_t i = 0; i < a->nr_seccomp; i++) {
        struct {
            uint16_t len;
            uint16_t pad[3];
            uint64_t filter;
        } prog = {(uint16_t)f[i].nr_insns, {0, 0, 0}, (uint64_t)AT(a, f[i].insns_off, char)};
        CHECK(SYS3(NR_seccomp, SECCOMP_SET_MODE_FILTER, f[i].flags, &prog), BLOB_STEP_SECCOMP, i);
    }
    if (a->creds.enabled && a->creds.caps_after_seccomp)
        set_caps(a);
}

/* Everything a thread restores for itself, up to the point where it waits for go. */
static void prepare_thread(struct blob_args* a, struct blob_thread* t) {
    SYS1(NR_set_tid_address, t->clear_child_tid); /* returns the tid, cannot fail */
    if (t->robust_list)
        CHECK(SYS2(NR_set_robust_list, t->robust_list, t->robust_list_len), BLOB_STEP_ROBUST_LIST,
              0);
    struct {
        uint64_t sp;
        int32_t flags;
        int32_t pad;
        uint64_t size;
    } ss = {t->altstack_sp, t->altstack_flags, 0, t->altstack_size};
    CHECK(SYS2(NR_sigaltstack, &ss, 0), BLOB_STEP_SIGALTSTACK, 0);
    CHECK(SYS5(NR_prctl, PR_SET_NAME, t->comm, 0, 0, 0), BLOB_STEP_COMM, 0);
    int32_t param = t->sched_priority;
    CHECK(SYS3(NR_sched_setscheduler, 0, t->sched_policy, &param), BLOB_STEP_SCHED, 0);
    CHECK(SYS3(NR_setpriority, PRIO_PROCESS, 0, t->nice), BLOB_STEP_NICE, 0);
    if (a->timerslack_ns)
        CHECK(SYS5(NR_prctl, PR_SET_TIMERSLACK, a->timerslack_ns, 0, 0, 0), BLOB_STEP_TIMERSLACK, 0);
    /* fs_base is not part of the sigcontext (KERNEL-NOTES pitfall 10). The blob itself never
     * touches %fs (no TLS, no stack protector), so it can change here. */
    CHECK(SYS2(NR_arch_prctl, ARCH_SET_FS, t->fs_base), BLOB_STEP_FS_BASE, 0);
    if (t->gs_base)
        CHECK(SYS2(NR_arch_prctl, ARCH_SET_GS, t->gs_base), BLOB_STEP_GS_BASE, 0);
    if (t->rseq_ptr)
        CHECK(SYS4(NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig), BLOB_STEP_RSEQ_REGISTER, 0);
    /* Queued to itself: rt_tgsigqueueinfo refuses a positive si_code (kill/tkill senders)
     * unless the caller is the target thread. Every signal is blocked here, so they wait
     * until rt_sigreturn installs the dumped mask. */
    char* info = AT(a, t->pending_off, char);
    for (uint32_t i = 0; i < t->nr_pending; i++, info += 128) {
        int32_t signo = *(int32_t*)info;
        CHECK(SYS4(NR_rt_tgsigqueueinfo, a->pid, t->tid, signo, info), BLOB_STEP_SIGQUEUE, signo);
    }
    set_creds(a);
    if (a->no_new_privs)
        CHECK(SYS5(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), BLOB_STEP_NO_NEW_PRIVS, 0);
}

static __attribute__((noreturn)) void thread_main(void* arg, uint64_t idx) {
    struct blob_args* a = (struct blob_args*)arg;
    struct blob_thread* t = &AT(a, a->threads_off, struct blob_thread)[idx];
    prepare_thread(a, t);
    bump(&a->threads_ready);
    wait_at_least(&a->go, 1);
    install_seccomp(a);
    bump(&a->threads_past_seccomp);
    blob_sigreturn(t->frame);
}

static void create_threads(struct blob_args* a) {
    struct blob_thread* th = AT(a, a->threads_off, struct blob_thread);
    for (uint32_t i = 1; i < a->nr_threads; i++) {
        struct criu_clone_args ca;
        memset(&ca, 0, sizeof(ca));
        int32_t tid = th[i].tid;
        /* No CLONE_SETTLS: fs_base is set by the thread itself with ARCH_SET_FS. */
        ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
        ca.stack = th[i].stack_top - BLOB_THREAD_STACK_SIZE;
        ca.stack_size = BLOB_THREAD_STACK_SIZE;
        ca.set_tid = (uint64_t)&tid;
        ca.set_tid_size = 1;
        long r = blob_clone3_thread(&ca, sizeof(ca), thread_main, a, i);
        if (r < 0)
            die(a, BLOB_STEP_THREAD_CLONE, r, (uint64_t)tid);
        if (r != tid)
            die(a, BLOB_STEP_THREAD_CLONE, -EINVAL, (uint64_t)tid);
    }
    wait_at_least(&a->threads_ready, a->nr_threads - 1);
}

static void queue_shared_signals(struct blob_args* a) {
    char* info = AT(a, a->shared_pending_off, char);
    for (uint32_t i = 0; i < a->nr_shared_pending; i++, info += 128) {
        int32_t signo = *(int32_t*)info;
        CHECK(SYS3(NR_rt_sigqueueinfo, a->pid, signo, info), BLOB_STEP_SIGQUEUE, signo);
    }
}

static void wait_for_go(struct blob_args* a) {
    report(a, BLOB_STEP_READY, 0, 0);
    char c = 0;
    long r;
    do
        r = SYS3(NR_read, fd_at(a, BLOB_FD_GO), &c, 1);
    while (r == -EINTR);
    /* EOF: criu is gone or gave up; a half-restored process must not run on. */
    if (r != 1 || c != 'G')
        die(a, BLOB_STEP_GO_WAIT, r < 0 ? r : -EPIPE, 0);
}

static void close_service_fds(struct blob_args* a) {
    int32_t* fds = AT(a, a->fds_off, int32_t);
    for (uint32_t i = 0; i < a->nr_fds; i++)
        if (fds[i] >= 0)
            SYS1(NR_close, fds[i]);
}

HIDDEN __attribute__((noreturn, used)) void blob_main(struct blob_args* a) {
    uint64_t all = ~0ull;
    SYS4(NR_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
    if (a->magic != BLOB_ARGS_MAGIC || a->nr_threads == 0)
        die(a, BLOB_STEP_ENTRY, -EINVAL, 0);
    struct blob_thread* main_thread = AT(a, a->threads_off, struct blob_thread);

    /* The restorer's glibc registered rseq with the kernel's length 32, not __rseq_size (20):
     * unregistering with another length fails with EINVAL and the process dies later. */
    if (a->own_rseq_ptr)
        CHECK(SYS4(NR_rseq, a->own_rseq_ptr, a->own_rseq_len, RSEQ_FLAG_UNREGISTER, a->own_rseq_sig),
              BLOB_STEP_RSEQ_UNREGISTER, 0);
    move_vdso(a, 0);
    unmap_restorer(a);
    if (a->vdso_in_target)
        move_vdso(a, 1);
    else
        drop_parked_vdso(a);
    map_vmas(a);
    fill_pages(a);
    int32_t uffd = register_lazy(a);
    protect_vmas(a);
    set_mm(a);
    set_signals_and_itimers(a);
    create_threads(a);
    create_posix_timers(a);
    queue_shared_signals(a);
    prepare_thread(a, main_thread);
    /* Any thread's uid/gid change resets the mm's dumpable flag to suid_dumpable
     * (commit_creds): set it once every thread has its credentials. */
    if (a->dumpable >= 0)
        CHECK(SYS5(NR_prctl, PR_SET_DUMPABLE, a->dumpable, 0, 0, 0), BLOB_STEP_DUMPABLE, 0);
    wait_for_go(a);
    if (a->pdeath_signal >= 0)
        CHECK(SYS5(NR_prctl, PR_SET_PDEATHSIG, a->pdeath_signal, 0, 0, 0), BLOB_STEP_PDEATHSIG, 0);
    __atomic_store_n(&a->go, 1, __ATOMIC_SEQ_CST);
    futex_wake_all(&a->go);
    wait_at_least(&a->threads_past_seccomp, a->nr_threads - 1);
    install_seccomp(a);
    report(a, BLOB_STEP_DONE, 0, 0);
    close_service_fds(a);
    if (uffd >= 0)
        SYS1(NR_close, uffd);
    blob_sigreturn(main_thread->frame);
}
