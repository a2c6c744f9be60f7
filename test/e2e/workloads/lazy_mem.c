/*
 * Post-copy workload: a few hundred MiB of known content in every kind of memory a lazy
 * restore leaves to the lazy-pages daemon (anonymous mappings, heap, stack), plus the moves
 * that must not lose or resurrect data while pages are still missing: a kernel-mode read of a
 * lazy page (write(2) from it), an mremap of memory not yet filled, and MADV_DONTNEED of
 * memory not yet filled (must read as zero afterwards, never as the old data).
 *
 * argv[1]: MiB of the big region (default 256).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zdtm.h"

#define MIB (1ul << 20)

static void *map(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ZDTM_CHECK(p != MAP_FAILED, "mmap %zu", len);
    return p;
}

static void check(const char *what, const void *p, size_t len, uint32_t seed) {
    long bad = zdtm_check(p, len, seed);
    if (bad < 0)
        return;
    /* Say how much is wrong and whether it reads as zero (a page lost) or as other data. */
    const uint8_t *b = p;
    size_t wrong = 0, zero = 0, last = 0;
    for (size_t i = (size_t)bad; i < len; i++)
        if (b[i] != zdtm_pattern(seed, i)) {
            wrong++;
            zero += b[i] == 0;
            last = i;
        }
    zdtm_fail("%s: byte %ld of %zu differs (%zu wrong up to %zu, %zu of them zero)", what, bad, len, wrong, last,
              zero);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    size_t big_len = (argc > 1 ? strtoul(argv[1], NULL, 10) : 256) * MIB;
    char *big = map(big_len);
    zdtm_fill(big, big_len, 1);
    char *moved = map(16 * MIB);
    zdtm_fill(moved, 16 * MIB, 3);
    char *dropped = map(8 * MIB);
    zdtm_fill(dropped, 8 * MIB, 4);
    char *kernel_read = map(1 * MIB);
    zdtm_fill(kernel_read, 1 * MIB, 5);
    /* Heap: many small blocks (brk, not mmap). */
    enum { NBLK = 4096, BLK = 1000 };
    static char *blocks[NBLK];
    for (int i = 0; i < NBLK; i++) {
        blocks[i] = malloc(BLK);
        ZDTM_CHECK(blocks[i], "malloc");
        zdtm_fill(blocks[i], BLK, 100 + (uint32_t)i);
    }
    /* Stack. */
    char stack_buf[64 * 1024];
    zdtm_fill(stack_buf, sizeof stack_buf, 6);
    /* A hole far from everything for the mremap target. */
    char *target = map(32 * MIB);
    munmap(target, 32 * MIB);

    zdtm_ready();
    zdtm_wait();

    /* Before anything else touches them. */
    char *to = mremap(moved, 16 * MIB, 16 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    ZDTM_CHECK(to == target, "mremap");
    ZDTM_CHECK(madvise(dropped + 2 * MIB, 2 * MIB, MADV_DONTNEED) == 0, "madvise");
    int p[2];
    ZDTM_CHECK(pipe(p) == 0, "pipe");
    ZDTM_CHECK(write(p[1], kernel_read, 60000) == 60000, "write from a lazy page");
    static char back[60000];
    ZDTM_CHECK(read(p[0], back, sizeof back) == (ssize_t)sizeof back, "read back");
    check("kernel read of a lazy page", back, sizeof back, 5);

    check("moved region", to, 16 * MIB, 3);
    check("dropped region, head", dropped, 2 * MIB, 4);
    for (size_t i = 2 * MIB; i < 4 * MIB; i++)
        ZDTM_CHECK(dropped[i] == 0, "dropped region: byte %zu is %d after MADV_DONTNEED", i, dropped[i]);
    for (size_t i = 4 * MIB; i < 8 * MIB; i++)
        ZDTM_CHECK((uint8_t)dropped[i] == zdtm_pattern(4, i), "dropped region, tail: byte %zu differs", i);
    check("kernel_read region", kernel_read, 1 * MIB, 5);
    check("big region", big, big_len, 1);
    check("stack", stack_buf, sizeof stack_buf, 6);
    for (int i = 0; i < NBLK; i++)
        check("heap block", blocks[i], BLK, 100 + (uint32_t)i);
    zdtm_pass();
}
