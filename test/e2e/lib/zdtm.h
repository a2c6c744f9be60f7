/*
 * Workload side of the end-to-end tests, in the spirit of CRIU's zdtm: a workload
 * sets a state up, says READY, waits for SIGTERM (sent by the runner after the
 * restore), verifies itself and prints PASS or FAIL: <why> on stdout.
 */
#ifndef ZDTM_H
#define ZDTM_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

extern volatile sig_atomic_t zdtm_stop;

/* Installs the SIGTERM handler. Call first. */
void zdtm_init(int argc, char **argv);
/* Tells the runner the state is set up. */
void zdtm_ready(void);
/* Blocks (sigsuspend) until the runner's SIGTERM arrives. */
void zdtm_wait(void);
/* For the root of a tree, before zdtm_ready(): waits (up to 10 s) until every live descendant's
 * main thread sleeps in rt_sigsuspend (zdtm_wait), so that the runner's /proc snapshot never
 * catches one between blocking SIGTERM and sleeping (SigBlk differs there). */
void zdtm_wait_tree_suspended(void);
/* Verdicts: print and exit. */
void zdtm_pass(void) __attribute__((noreturn));
void zdtm_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints a diagnostic line without ending the test. */
void zdtm_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A deterministic byte pattern: seed and offset give the byte. */
static inline uint8_t zdtm_pattern(uint32_t seed, uint64_t off) {
    uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 29;
    return (uint8_t)(x ^ (x >> 17));
}
void zdtm_fill(void *buf, size_t len, uint32_t seed);
/* Returns the offset of the first wrong byte, or -1 when all match. */
long zdtm_check(const void *buf, size_t len, uint32_t seed);

#define ZDTM_CHECK(cond, ...)            \
    do {                                 \
        if (!(cond))                     \
            zdtm_fail(__VA_ARGS__);      \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
