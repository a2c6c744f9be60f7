/*
 * Benchmark workload for incremental dumps: N MiB (argv[1]) of private anonymous memory, all
 * pages written with distinct content, then PCT percent of the pages (argv[2], may be
 * fractional) rewritten per second, spread evenly over the second, until killed. Prints READY
 * once the memory is populated.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    double pct = argc > 2 ? atof(argv[2]) : 1.0;
    size_t pages = (mib << 20) / 4096;
    uint64_t *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 1;
    for (size_t i = 0; i < pages * 512; i++)
        mem[i] = i * 0x9E3779B97F4A7C15ull;
    printf("READY %d\n", getpid());
    fflush(stdout);
    double per_s = (double)pages * pct / 100.0;
    uint64_t x = 88172645463325252ull, gen = 1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double done = 0;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
        while (done < el * per_s) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t *p = mem + (x % pages) * 512;
            for (int k = 0; k < 512; k++)
                p[k] = (gen << 32) ^ (uint64_t)k;
            gen++;
            done += 1;
        }
        usleep(1000);
    }
}
