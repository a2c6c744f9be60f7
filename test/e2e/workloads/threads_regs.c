/*
 * N threads (argv[1], default 1 plus the main thread) spin in a loop that holds
 * known values in general registers (r12-r15), in xmm/ymm registers and, where the
 * CPU has AVX-512, in zmm16-zmm31 (upper halves included) and opmask registers.
 * The loop ends when the stop flag is set; each thread then checks that every
 * register still holds its value: a restore that loses the XSAVE state, or
 * restores only the FXSAVE part, fails here.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

static atomic_int started;
static volatile int stop_flag;
static int have_avx512;

struct regs_out {
    uint64_t gp[4];
    uint64_t ymm[4][4]; /* ymm12..ymm15 */
    uint64_t zmm[4][8]; /* zmm28..zmm31 */
    uint64_t k[2];      /* k6, k7 */
    uint64_t loops;
};

static uint64_t seed_of(int id, int reg, int lane) {
    return 0x0123456789abcdefull * (uint64_t)(id + 1) ^ ((uint64_t)reg << 40) ^ ((uint64_t)lane << 56) ^ 0x5555;
}

struct spin_in {
    uint64_t gp[4];
    uint64_t ymm[4][4] __attribute__((aligned(32)));
    uint64_t zmm[4][8] __attribute__((aligned(64)));
    uint64_t k[2];
};

/* The register loops: values are loaded once, then the thread spins until the stop
 * flag is set, then stores what the registers hold. */
__attribute__((target("avx512f,avx512bw"))) static void spin_avx512(const struct spin_in *in, struct regs_out *out) {
    uint64_t loops = 0;
    __asm__ volatile(
        "mov 0(%[gp]), %%r12\n mov 8(%[gp]), %%r13\n mov 16(%[gp]), %%r14\n mov 24(%[gp]), %%r15\n"
        "vmovdqa 0(%[y]), %%ymm12\n vmovdqa 32(%[y]), %%ymm13\n vmovdqa 64(%[y]), %%ymm14\n vmovdqa 96(%[y]), %%ymm15\n"
        "vmovdqa64 0(%[z]), %%zmm28\n vmovdqa64 64(%[z]), %%zmm29\n vmovdqa64 128(%[z]), %%zmm30\n vmovdqa64 192(%[z]), %%zmm31\n"
        "kmovq 0(%[k]), %%k6\n kmovq 8(%[k]), %%k7\n"
        "1: incq %[loops]\n pause\n cmpl $0, %[stop]\n je 1b\n"
        "mov %%r12, 0(%[og])\n mov %%r13, 8(%[og])\n mov %%r14, 16(%[og])\n mov %%r15, 24(%[og])\n"
        "vmovdqu %%ymm12, 0(%[oy])\n vmovdqu %%ymm13, 32(%[oy])\n vmovdqu %%ymm14, 64(%[oy])\n vmovdqu %%ymm15, 96(%[oy])\n"
        "vmovdqu64 %%zmm28, 0(%[oz])\n vmovdqu64 %%zmm29, 64(%[oz])\n vmovdqu64 %%zmm30, 128(%[oz])\n vmovdqu64 %%zmm31, 192(%[oz])\n"
        "kmovq %%k6, 0(%[ok])\n kmovq %%k7, 8(%[ok])\n"
        : [loops] "+m"(loops)
        : [gp] "r"(in->gp), [y] "r"(in->ymm), [z] "r"(in->zmm), [k] "r"(in->k), [stop] "m"(stop_flag),
          [og] "r"(out->gp), [oy] "r"(out->ymm), [oz] "r"(out->zmm), [ok] "r"(out->k)
        : "r12", "r13", "r14", "r15", "xmm12", "xmm13", "xmm14", "xmm15", "xmm28", "xmm29", "xmm30", "xmm31",
          "k6", "k7", "memory", "cc");
    out->loops = loops;
}

__attribute__((target("avx2"))) static void spin_avx2(const struct spin_in *in, struct regs_out *out) {
    uint64_t loops = 0;
    __asm__ volatile(
        "mov 0(%[gp]), %%r12\n mov 8(%[gp]), %%r13\n mov 16(%[gp]), %%r14\n mov 24(%[gp]), %%r15\n"
        "vmovdqa 0(%[y]), %%ymm12\n vmovdqa 32(%[y]), %%ymm13\n vmovdqa 64(%[y]), %%ymm14\n vmovdqa 96(%[y]), %%ymm15\n"
        "1: incq %[loops]\n pause\n cmpl $0, %[stop]\n je 1b\n"
        "mov %%r12, 0(%[og])\n mov %%r13, 8(%[og])\n mov %%r14, 16(%[og])\n mov %%r15, 24(%[og])\n"
        "vmovdqu %%ymm12, 0(%[oy])\n vmovdqu %%ymm13, 32(%[oy])\n vmovdqu %%ymm14, 64(%[oy])\n vmovdqu %%ymm15, 96(%[oy])\n"
        : [loops] "+m"(loops)
        : [gp] "r"(in->gp), [y] "r"(in->ymm), [stop] "m"(stop_flag), [og] "r"(out->gp), [oy] "r"(out->ymm)
        : "r12", "r13", "r14", "r15", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
    out->loops = loops;
}

static void spin(int id, struct regs_out *out) {
    static __thread struct spin_in in;
    for (int r = 0; r < 4; r++) {
        in.gp[r] = seed_of(id, r, 0);
        for (int l = 0; l < 4; l++)
            in.ymm[r][l] = seed_of(id, 10 + r, l);
        for (int l = 0; l < 8; l++)
            in.zmm[r][l] = seed_of(id, 20 + r, l);
    }
    in.k[0] = seed_of(id, 30, 0);
    in.k[1] = seed_of(id, 31, 0);
    atomic_fetch_add(&started, 1);
    if (have_avx512)
        spin_avx512(&in, out);
    else
        spin_avx2(&in, out);
}

static void verify(int id, const struct regs_out *o) {
    for (int r = 0; r < 4; r++) {
        ZDTM_CHECK(o->gp[r] == seed_of(id, r, 0), "thread %d: r%d lost", id, 12 + r);
        for (int l = 0; l < 4; l++)
            ZDTM_CHECK(o->ymm[r][l] == seed_of(id, 10 + r, l), "thread %d: ymm%d lane %d lost", id, 12 + r, l);
        if (have_avx512)
            for (int l = 0; l < 8; l++)
                ZDTM_CHECK(o->zmm[r][l] == seed_of(id, 20 + r, l), "thread %d: zmm%d lane %d lost", id, 28 + r, l);
    }
    if (have_avx512) {
        ZDTM_CHECK(o->k[0] == seed_of(id, 30, 0) && o->k[1] == seed_of(id, 31, 0), "thread %d: opmask lost", id);
    }
}

struct worker {
    pthread_t th;
    int id;
    pid_t tid;
    struct regs_out out;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    w->tid = (pid_t)syscall(SYS_gettid);
    spin(w->id, &w->out);
    pid_t now = (pid_t)syscall(SYS_gettid);
    if (now != w->tid)
        w->out.loops = 0; /* flagged below: the TID changed */
    return NULL;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int n = argc > 1 ? atoi(argv[1]) : 1;
    have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    struct worker *ws = calloc((size_t)n + 1, sizeof(*ws));
    for (int i = 1; i <= n; i++) {
        ws[i].id = i;
        ZDTM_CHECK(pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) == 0, "pthread_create");
    }
    while (atomic_load(&started) < n)
        usleep(1000);
    zdtm_ready();

    /* The main thread waits in user space; SIGTERM (to any thread) sets zdtm_stop,
     * which is mirrored into the flag the register loops read. */
    pid_t pid = getpid();
    while (!zdtm_stop)
        __asm__ volatile("pause");
    stop_flag = 1;
    for (int i = 1; i <= n; i++) {
        ZDTM_CHECK(pthread_join(ws[i].th, NULL) == 0, "pthread_join");
        ZDTM_CHECK(ws[i].out.loops > 0, "thread %d: no loops or TID changed", i);
        verify(i, &ws[i].out);
    }
    ZDTM_CHECK(getpid() == pid, "pid changed");
    zdtm_pass();
}
