/*
 * Write order across incremental dumps that copy while the process runs (issue 5): after the
 * restore of a chain, no page may be older than its last write before the final freeze.
 *
 * The process keeps a 64-bit counter and writes without pause (in bursts of BURST pages, then
 * 1 ms of sleep): each write takes the next counter value c, fills one page entirely with words
 * derived from (c, page, word index), and only then records last[page] = c. Pages are chosen
 * by a sweep through the region (so the writes keep crossing the copier's position) mixed with
 * random ones, and every 8th write goes to a memfd through pwrite(2) instead: the process maps
 * that memfd privately and only reads it, so the mapping's pages (page cache of the memfd, which
 * the dumper copies: the memfd has no name to map at restore) change without any write through
 * the page tables, and a tracker that trusted write-protection alone would miss them.
 *
 * last[], the counter and the in-flight record live in the process's own memory, so they are
 * restored from the same image set as the pages. Consistent means: every page holds exactly
 * the words of last[page] (the page being written at the freeze: each word the old or the new
 * value), no page holds a value above the counter, and the newest page holds the counter.
 *
 * A restore is noticed by the process itself (its start time in /proc/self/stat changes, read
 * once per burst and before every memfd write), and it stops writing there and verifies, so
 * that a stale page cannot be rewritten (and hidden) between the restore and the runner's
 * SIGTERM: at most the anonymous writes left in the burst it was frozen in come first. It
 * prints PASS after SIGTERM.
 * argv[1]: pages in the anonymous region (default 8192 = 32 MiB).
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
#define WORDS (PG / 8)
#define S_PAGES 64
#define BURST 16

static uint64_t *R;       /* the anonymous region */
static uint64_t *S;       /* private, read-only mapping of the memfd */
static int sfd;           /* the memfd, written with pwrite */
static long r_pages;
static uint64_t *last;    /* last[i]: counter of the last completed write of page i (R, then S) */
static uint64_t counter;  /* the newest value handed out */
static volatile long inflight = -1;  /* page (index into last[]) being written, or -1 */
static volatile uint64_t inflight_old, inflight_new;
static char failure[512];

static uint64_t word(uint64_t c, long page, uint64_t k) {
    uint64_t x = (c << 20) ^ ((uint64_t)page << 3) ^ (k * 0x9E3779B97F4A7C15ull);
    return x ^ (x >> 31);
}

static void fill(uint64_t *p, uint64_t c, long page) {
    for (uint64_t k = 0; k < WORDS; ++k)
        p[k] = word(c, page, k);
}

static uint64_t start_time(void) {
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* Field 3 follows ") "; the start time is field 22. */
    unsigned long long v = 0;
    int field = 2;
    for (char *q = p + 1; *q; ++q) {
        if (*q != ' ')
            continue;
        if (++field == 22) {
            v = strtoull(q + 1, NULL, 10);
            break;
        }
    }
    return v;
}

static const uint64_t *page_at(long page) {
    return page < r_pages ? R + (uint64_t)page * WORDS : S + (uint64_t)(page - r_pages) * WORDS;
}

/* Records the first inconsistency in `failure`; returns the number of bad pages. */
static long verify(void) {
    long bad = 0;
    uint64_t newest = 0;
    for (long i = 0; i < r_pages + S_PAGES; ++i) {
        const uint64_t *p = page_at(i);
        uint64_t want = last[i];
        if (last[i] > counter && !failure[0])
            snprintf(failure, sizeof failure, "last[%ld] = %llu is above the counter %llu", i,
                     (unsigned long long)last[i], (unsigned long long)counter);
        if (want > newest)
            newest = want;
        for (uint64_t k = 0; k < WORDS; ++k) {
            if (p[k] == word(want, i, k))
                continue;
            if (i == inflight && p[k] == word(inflight_new, i, k))
                continue;
            ++bad;
            if (failure[0])
                break;
            /* Which write does this word belong to? (for the message: older or newer) */
            long long seen = -1;
            for (uint64_t c = counter + 1; c-- > 0 && counter - c < 4000000;)
                if (p[k] == word(c, i, k)) {
                    seen = (long long)c;
                    break;
                }
            snprintf(failure, sizeof failure,
                         "%s page %ld word %llu: holds write %lld, its last write before the freeze was %llu "
                         "(counter %llu, in flight %ld)",
                         i < r_pages ? "anonymous" : "memfd", i < r_pages ? i : i - r_pages, (unsigned long long)k,
                         seen, (unsigned long long)want, (unsigned long long)counter, (long)inflight);
            break;
        }
    }
    /* Frozen between handing out the counter and recording the write: the write before it is
     * the newest completed one. */
    uint64_t top = inflight >= 0 ? counter - 1 : counter;
    if (!failure[0] && newest != top)
        snprintf(failure, sizeof failure, "the newest page holds write %llu, the counter is %llu",
                 (unsigned long long)newest, (unsigned long long)counter);
    return bad;
}

static void write_page(long page, uint64_t *buf) {
    uint64_t c = counter + 1;
    inflight_old = last[page];
    inflight_new = c;
    inflight = page;
    counter = c;
    /* The fences keep the compiler from moving the bookkeeping across the page writes. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (page < r_pages) {
        fill(R + (uint64_t)page * WORDS, c, page);
    } else {
        fill(buf, c, page);
        if (pwrite(sfd, buf, PG, (off_t)((page - r_pages) * PG)) != (ssize_t)PG)
            zdtm_fail("pwrite of memfd page %ld: %s", page - r_pages, strerror(errno));
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    last[page] = c;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    inflight = -1;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    r_pages = argc > 1 ? atol(argv[1]) : 8192;
    ZDTM_CHECK(r_pages > 0, "bad page count %s", argv[1]);
    R = mmap(NULL, r_pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ZDTM_CHECK(R != MAP_FAILED, "mmap R: %s", strerror(errno));
    sfd = memfd_create("mem_order", MFD_CLOEXEC);
    ZDTM_CHECK(sfd >= 0 && ftruncate(sfd, S_PAGES * PG) == 0, "memfd: %s", strerror(errno));
    /* Private and only read: no page is ever COWed, so the mapping shows the memfd's content,
     * which pwrite changes. */
    S = mmap(NULL, S_PAGES * PG, PROT_READ, MAP_PRIVATE, sfd, 0);
    ZDTM_CHECK(S != MAP_FAILED, "mmap S: %s", strerror(errno));
    last = calloc((size_t)(r_pages + S_PAGES), sizeof *last);
    uint64_t *buf = aligned_alloc(PG, PG);
    ZDTM_CHECK(last && buf, "out of memory");
    for (long i = 0; i < r_pages + S_PAGES; ++i)
        write_page(i, buf);
    /* Fault the mapping's pages in: the dumper finds page-cache pages of a private mapping by
     * their page table entries, and pwrite keeps updating those same pages. */
    uint64_t sum = 0;
    for (long i = 0; i < S_PAGES; ++i)
        sum += S[(uint64_t)i * WORDS];
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    ZDTM_CHECK(sum != 1, "unlikely checksum");
    const uint64_t born = start_time();
    ZDTM_CHECK(born != 0, "cannot read /proc/self/stat");

    zdtm_ready();
    uint64_t x = 88172645463325252ull;
    long sweep = 0, n = 0;
    struct timespec pause = {0, 1000000};
    long bad = -1;
    while (!zdtm_stop && bad < 0) {
        if (start_time() != born) {
            bad = verify();  /* restored: check before anything is written again */
            break;
        }
        for (int b = 0; b < BURST; ++b, ++n) {
            long page;
            if (n % 8 == 7) {
                /* The restore maps a private memfd mapping as anonymous memory filled with its
                 * content: from then on it no longer shows writes to the memfd. So no memfd
                 * write may follow a restore unchecked. */
                if (start_time() != born) {
                    bad = verify();
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                page = r_pages + (long)(x % S_PAGES);
            } else if (n % 2) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                page = (long)(x % (uint64_t)r_pages);
            } else {
                page = sweep;
                sweep = (sweep + 7) % r_pages;
            }
            write_page(page, buf);
        }
        nanosleep(&pause, NULL);
    }
    /* The runner's SIGTERM may end the loop before its first check after the restore. */
    if (bad < 0 && start_time() != born)
        bad = verify();
    if (bad < 0)
        zdtm_fail("SIGTERM before a restore (start time unchanged): nothing was checked");
    /* Not zdtm_wait(): its sigsuspend blocks SIGTERM around the sleep, and the runner's /proc
     * snapshot right after the restore could catch SigBlk in between (it saw the process
     * writing with nothing blocked before the dump). A short sleep loop changes no mask. */
    struct timespec tick = {0, 10000000};
    while (!zdtm_stop)
        nanosleep(&tick, NULL);
    if (bad)
        zdtm_fail("%ld pages inconsistent after the restore; first: %s", bad, failure);
    if (failure[0])
        zdtm_fail("%s", failure);
    zdtm_msg("%ld anonymous + %d memfd pages consistent, %llu writes", r_pages, S_PAGES,
             (unsigned long long)counter);
    zdtm_pass();
}
