/*
 * The live-migration workload: STATIC_MIB of memory written once, and DYNAMIC_MIB that it
 * keeps rewriting at RATE_MIB_S while it runs, one page at a time, checking the clock
 * between pages. After SIGTERM it verifies both areas (every page of the dynamic area
 * must hold the words of the generation its header names, every static byte its pattern),
 * reports the longest gap it saw between two consecutive clock readings (the pause a
 * migration caused it) and prints PASS.
 *
 *   mig_writer STATIC_MIB DYNAMIC_MIB RATE_MIB_S [SPIN_US]
 *
 * SPIN_US: CPU work (a busy loop) after every page, so that the rate it dirties memory at
 * follows the CPU it gets (the migration's cgroup throttle test).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PG 4096ul
#define WORDS (PG / 8)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t word(uint64_t gen, uint64_t page, uint64_t j) {
    return (gen * 0x9E3779B97F4A7C15ull) ^ (page << 20) ^ j;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    if (argc < 4)
        zdtm_fail("usage: mig_writer STATIC_MIB DYNAMIC_MIB RATE_MIB_S");
    size_t static_len = strtoul(argv[1], NULL, 10) << 20;
    size_t dyn_pages = (strtoul(argv[2], NULL, 10) << 20) / PG;
    double rate_pages_s = strtod(argv[3], NULL) * (1 << 20) / PG;
    uint64_t spin_ns = argc > 4 ? (uint64_t)(strtod(argv[4], NULL) * 1000) : 0;
    if (dyn_pages == 0 || rate_pages_s <= 0)
        zdtm_fail("need a dynamic area and a rate");

    uint8_t *st = mmap(NULL, static_len ? static_len : PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *dyn = mmap(NULL, dyn_pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st == MAP_FAILED || dyn == MAP_FAILED)
        zdtm_fail("mmap failed");
    /* The static area: a pattern cheap to check, different in every 4 KiB. */
    for (size_t off = 0; off < static_len; off += 8) {
        uint64_t v = (off * 0x2545F4914F6CDD1Dull) ^ 0x5a5a5a5a5a5a5a5aull;
        memcpy(st + off, &v, 8);
    }
    for (size_t p = 0; p < dyn_pages; p++)
        for (size_t j = 0; j < WORDS; j++)
            dyn[p * WORDS + j] = j == 0 ? 0 : word(0, p, j);
    zdtm_ready();

    uint64_t start = now_ns(), last = start, max_gap = 0, written = 0, gen = 0;
    size_t page = 0;
    while (!zdtm_stop) {
        uint64_t t = now_ns();
        if (t - last > max_gap)
            max_gap = t - last;
        last = t;
        /* Write as many pages as the rate allows by now, then sleep a little. */
        uint64_t due = (uint64_t)((double)(t - start) / 1e9 * rate_pages_s);
        if (written >= due) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (page == 0)
            gen++;
        uint64_t *w = dyn + page * WORDS;
        for (size_t j = 1; j < WORDS; j++)
            w[j] = word(gen, page, j);
        w[0] = gen; /* last: a page whose header says gen holds gen's words */
        written++;
        page = (page + 1) % dyn_pages;
        /* CPU time, not wall time: a throttled writer does less per second. */
        if (spin_ns) {
            struct timespec c0, c1;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
            do
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
            while ((uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000ull + (uint64_t)(c1.tv_nsec - c0.tv_nsec) < spin_ns);
        }
    }

    for (size_t off = 0; off < static_len; off += 8) {
        uint64_t v = (off * 0x2545F4914F6CDD1Dull) ^ 0x5a5a5a5a5a5a5a5aull, got;
        memcpy(&got, st + off, 8);
        if (got != v)
            zdtm_fail("static area differs at offset %zu", off);
    }
    for (size_t p = 0; p < dyn_pages; p++) {
        uint64_t g = dyn[p * WORDS];
        if (g > gen)
            zdtm_fail("page %zu says generation %lu, the writer is at %lu", p, (unsigned long)g, (unsigned long)gen);
        for (size_t j = 1; j < WORDS; j++)
            if (dyn[p * WORDS + j] != word(g, p, j))
                zdtm_fail("page %zu word %zu does not belong to generation %lu", p, j, (unsigned long)g);
    }
    zdtm_msg("max pause %.1f ms, %lu pages written, generation %lu", (double)max_gap / 1e6, (unsigned long)written,
             (unsigned long)gen);
    zdtm_pass();
}
