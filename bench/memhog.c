/*
 * Benchmark workload: touches N MiB (argv[1]) of private anonymous memory, half of it
 * random bytes (incompressible), half a repeating text-like pattern (compressible),
 * prints READY and sleeps until killed. With argv[2] = "check", SIGTERM makes it
 * verify a checksum of the whole area and print PASS/FAIL (used after restore).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

static uint64_t checksum(const uint64_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    size_t len = mib << 20;
    if (argc > 2 && strcmp(argv[2], "fill") == 0) {
        /* Ceiling for a restore: map fresh memory and fill it, as a restore must. */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uint8_t *f = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (f == MAP_FAILED)
            return 1;
        memset(f, 0x5a, len);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%.6f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        return 0;
    }
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uint64_t x = 0x243F6A8885A308D3ull;
    uint64_t *w = (uint64_t *)m;
    for (size_t i = 0; i < len / 16; i++) { /* first half: xorshift random */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        w[i] = x;
    }
    static const char text[] = "checkpoint restore benchmark: the quick brown fox jumps over the lazy dog 0123456789\n";
    for (size_t off = len / 2; off < len; off++) /* second half: compressible text */
        m[off] = (uint8_t)text[off % (sizeof(text) - 1)] ^ (uint8_t)((off >> 12) & 3);
    uint64_t sum = checksum(w, len / 8);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY %d\n", getpid());
    while (!stop)
        pause();
    int ok = checksum(w, len / 8) == sum;
    printf(ok ? "PASS\n" : "FAIL: memory differs\n");
    return ok ? 0 : 1;
}
