/*
 * Benchmark workload: touches N MiB (argv[1]) of private anonymous memory, half of it
 * random bytes (incompressible), half a repeating text-like pattern (compressible),
 * prints READY and sleeps until killed. SIGTERM makes it verify a checksum of the whole
 * area and print PASS/FAIL (used after restore).
 * With argv[2] = "tree" and argv[3] = P, the N MiB are spread over a tree of P processes
 * (the root and P-1 children, N/P MiB each, different contents); the root says READY once
 * every child has its memory, passes SIGTERM on, and prints PASS only if all verified.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
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

/* Fills `len` bytes (seeded by `seed`), returns the checksum. */
static uint64_t fill(uint8_t *m, size_t len, uint64_t seed) {
    uint64_t x = 0x243F6A8885A308D3ull ^ (seed * 0x9E3779B97F4A7C15ull);
    uint64_t *w = (uint64_t *)m;
    for (size_t i = 0; i < len / 16; i++) { /* first half: xorshift random */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        w[i] = x;
    }
    static const char text[] = "checkpoint restore benchmark: the quick brown fox jumps over the lazy dog 0123456789\n";
    for (size_t off = len / 2; off < len; off++) /* second half: compressible text */
        m[off] = (uint8_t)text[off % (sizeof(text) - 1)] ^ (uint8_t)((off >> 12) & 3);
    return checksum(w, len / 8);
}

/* Waits for SIGTERM without the lost-wakeup race of `while (!stop) pause();`: a signal that
 * lands between the check and pause() (a window a restore widens: the restored thread re-enters
 * the interrupted pause() only after criu has returned) would be handled and then slept through.
 * SIGTERM stays blocked except inside sigsuspend(). */
static sigset_t block_term(void) {
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    sigdelset(&old, SIGTERM);
    return old;
}

static void wait_for_term(const sigset_t *unblocked) {
    while (!stop)
        sigsuspend(unblocked);
}

static int tree_main(size_t mib, int procs) {
    size_t len = (mib << 20) / (size_t)procs;
    len &= ~(size_t)4095;
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigset_t unblocked = block_term();
    setvbuf(stdout, NULL, _IOLBF, 0);
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t kids[procs];
    /* Fork before touching memory: forking a big process is slow (page tables). */
    for (int i = 1; i < procs; i++) {
        kids[i] = fork();
        if (kids[i] < 0)
            return 1;
        if (kids[i] == 0) {
            close(ready[0]);
            uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
            if (m == MAP_FAILED)
                _exit(1);
            uint64_t sum = fill(m, len, (uint64_t)i);
            char c = 1;
            if (write(ready[1], &c, 1) != 1)
                _exit(1);
            close(ready[1]);
            wait_for_term(&unblocked);
            _exit(checksum((uint64_t *)m, len / 8) == sum ? 0 : 1);
        }
    }
    close(ready[1]);
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    uint64_t sum = fill(m, len, 0);
    for (int got = 0; got < procs - 1;) {
        char c;
        ssize_t n = read(ready[0], &c, 1);
        if (n == 0)
            return 1;
        got += n == 1;
    }
    close(ready[0]);
    printf("READY %d\n", getpid());
    wait_for_term(&unblocked);
    int ok = checksum((uint64_t *)m, len / 8) == sum;
    for (int i = 1; i < procs; i++)
        kill(kids[i], SIGTERM);
    for (int i = 1; i < procs; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            ok = 0;
    }
    printf(ok ? "PASS\n" : "FAIL: memory differs\n");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    size_t len = mib << 20;
    if (argc > 3 && strcmp(argv[2], "tree") == 0)
        return tree_main(mib, atoi(argv[3]) > 0 ? atoi(argv[3]) : 1);
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
    uint64_t *w = (uint64_t *)m;
    uint64_t sum = fill(m, len, 0);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigset_t unblocked = block_term();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY %d\n", getpid());
    wait_for_term(&unblocked);
    int ok = checksum(w, len / 8) == sum;
    printf(ok ? "PASS\n" : "FAIL: memory differs\n");
    return ok ? 0 : 1;
}
