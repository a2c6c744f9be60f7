/*
 * Memory that keeps changing, for incremental dumps (pre-dump chains, dump --track-mem,
 * dump --pre-copy). Every page's expected content is derived from state the process keeps in
 * its own memory, so after a restore it can verify every byte:
 *   - A: 4096 pages rewritten all the time at RATE pages/s (argv[1], default 2000); page i holds
 *     zdtm_pattern(gen[i]) where gen[] lives in the process too. At most one page is in flight
 *     when the process is frozen: each of its bytes must then be the old or the new pattern.
 *   - phases, one per SIGUSR1 (the runner sends one between pre-dumps and waits for "PHASE n"):
 *     1: MADV_DONTNEED of A[100..200) (must read as zero from then on; never written again),
 *        and of the COWed pages 0..3 of the private file mapping F (must read as the file again);
 *     2: a new mapping B (256 pages) filled with a pattern after the pre-dump;
 *     3: region C (64 pages) moved with mremap, then 8 of its pages rewritten.
 * After SIGTERM (sent after the restore) it stops writing, verifies everything, prints PASS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PG 4096ul
#define A_PAGES 4096
#define B_PAGES 256
#define C_PAGES 64
#define F_PAGES 16
#define ZEROED 0xffffffffu

static volatile sig_atomic_t phase_requested;
static void on_usr1(int sig) {
    (void)sig;
    phase_requested++;
}

static uint8_t *A, *B, *C, *F;
static uint32_t gen[A_PAGES];       /* pattern seed of each page of A */
static volatile long inflight = -1; /* page of A being rewritten, or -1 */
static volatile uint32_t inflight_old, inflight_new;
static int phase;

static void check_page(const uint8_t *p, uint32_t seed, const char *what, long i) {
    long bad = zdtm_check(p, PG, seed);
    if (bad >= 0)
        zdtm_fail("%s page %ld: byte %ld is %#x, expected %#x (seed %u)", what, i, bad, p[bad],
                  zdtm_pattern(seed, (uint64_t)bad), seed);
}

static void check_zero(const uint8_t *p, const char *what, long i) {
    for (size_t k = 0; k < PG; ++k)
        if (p[k])
            zdtm_fail("%s page %ld: byte %zu is %#x, expected 0 (dropped with MADV_DONTNEED)", what, i, k, p[k]);
}

static void verify(void) {
    for (long i = 0; i < A_PAGES; ++i) {
        uint8_t *p = A + i * PG;
        if (i == inflight) {
            /* Frozen in the middle of a rewrite: each byte is old or new. */
            for (size_t k = 0; k < PG; ++k)
                if (p[k] != zdtm_pattern(inflight_old, k) && p[k] != zdtm_pattern(inflight_new, k))
                    zdtm_fail("A page %ld (in flight %u -> %u): byte %zu is %#x", i, inflight_old, inflight_new, k,
                              p[k]);
        } else if (gen[i] == ZEROED) {
            check_zero(p, "A", i);
        } else {
            check_page(p, gen[i], "A", i);
        }
    }
    for (long i = 0; i < F_PAGES; ++i) {
        /* F: the file holds seed 3000; pages 0..7 were COWed with seed 3001, 0..3 dropped again. */
        uint32_t seed = (i >= 4 && i < 8) || (phase < 1 && i < 4) ? 3001 : 3000;
        if (zdtm_check(F + i * PG, PG, seed) >= 0)
            zdtm_fail("F page %ld does not hold seed %u (phase %d)", i, seed, phase);
    }
    if (phase >= 2)
        for (long i = 0; i < B_PAGES; ++i)
            check_page(B + i * PG, 1000 + (uint32_t)i, "B", i);
    for (long i = 0; i < C_PAGES; ++i)
        check_page(C + i * PG, (phase >= 3 && i % 8 == 0) ? 2100 + (uint32_t)i : 2000 + (uint32_t)i, "C", i);
}

static void fill_page(uint8_t *p, uint32_t seed) {
    for (size_t k = 0; k < PG; ++k)
        p[k] = zdtm_pattern(seed, k);
}

static void next_phase(void) {
    ++phase;
    if (phase == 1) {
        ZDTM_CHECK(madvise(A + 100 * PG, 100 * PG, MADV_DONTNEED) == 0, "madvise A: %s", strerror(errno));
        for (int i = 100; i < 200; ++i)
            gen[i] = ZEROED;
        ZDTM_CHECK(madvise(F, 4 * PG, MADV_DONTNEED) == 0, "madvise F: %s", strerror(errno));
    } else if (phase == 2) {
        B = mmap(NULL, B_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ZDTM_CHECK(B != MAP_FAILED, "mmap B");
        for (long i = 0; i < B_PAGES; ++i)
            fill_page(B + i * PG, 1000 + (uint32_t)i);
    } else if (phase == 3) {
        void *to = mmap(NULL, C_PAGES * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ZDTM_CHECK(to != MAP_FAILED, "reserve for C");
        uint8_t *moved = mremap(C, C_PAGES * PG, C_PAGES * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        ZDTM_CHECK(moved != MAP_FAILED, "mremap C: %s", strerror(errno));
        C = moved;
        for (long i = 0; i < C_PAGES; i += 8)
            fill_page(C + i * PG, 2100 + (uint32_t)i);
    }
    printf("PHASE %d\n", phase);
    fflush(stdout);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    long rate = argc > 1 ? atol(argv[1]) : 2000;
    signal(SIGUSR1, on_usr1);

    A = mmap(NULL, A_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    C = mmap(NULL, C_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ZDTM_CHECK(A != MAP_FAILED && C != MAP_FAILED, "mmap");
    for (long i = 0; i < A_PAGES; ++i) {
        gen[i] = (uint32_t)i;
        fill_page(A + i * PG, gen[i]);
    }
    for (long i = 0; i < C_PAGES; ++i)
        fill_page(C + i * PG, 2000 + (uint32_t)i);

    char path[] = "zdtm-dirtyfile-XXXXXX";
    int fd = mkstemp(path);
    ZDTM_CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    uint8_t *buf = malloc(F_PAGES * PG);
    for (long i = 0; i < F_PAGES; ++i)
        fill_page(buf + i * PG, 3000);
    ZDTM_CHECK(write(fd, buf, F_PAGES * PG) == (ssize_t)(F_PAGES * PG), "write file");
    F = mmap(NULL, F_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    ZDTM_CHECK(F != MAP_FAILED, "mmap file");
    close(fd);
    for (long i = 0; i < 8; ++i)
        fill_page(F + i * PG, 3001);

    zdtm_ready();
    uint64_t x = 88172645463325252ull;
    struct timespec pause = {0, rate > 0 ? 1000000000l / rate : 0};
    if (pause.tv_nsec >= 1000000000l)
        pause = (struct timespec){1, 0};
    while (!zdtm_stop) {
        if (phase_requested > phase)
            next_phase();
        if (rate <= 0) {
            usleep(10000);
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        long i = (long)(x % A_PAGES);
        if (gen[i] == ZEROED)
            continue;
        inflight_old = gen[i];
        inflight_new = gen[i] + A_PAGES;
        inflight = i;
        /* The fences keep the compiler from moving the bookkeeping across the page writes. */
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        fill_page(A + i * PG, inflight_new);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        gen[i] = inflight_new;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        inflight = -1;
        nanosleep(&pause, NULL);
    }
    verify();
    zdtm_pass();
}
