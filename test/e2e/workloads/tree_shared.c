/*
 * What the processes of a tree share, through a dump and restore:
 *   - MAP_SHARED anonymous memory written by the parent before the fork (1 MiB, pattern), and
 *     a memfd mapped MAP_SHARED by all and also open as an fd: after the restore each process
 *     sees the others' writes, and the fd reads what the mappings wrote, so each is one
 *     object again;
 *   - a pipe from the parent P to child C1 with data in flight at the dump, and data written
 *     after the restore arriving behind it;
 *   - an open file inherited by child C2 (one open file description): C2's write after the
 *     restore moves the offset P sees.
 *   - a grandchild C3 (child of C1) that maps the same shared memory.
 * P prints PASS only if every check in every process holds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define SHM_SIZE (1 << 20)
#define MEMFD_SIZE (256 * 1024)
#define PAGE 4096
/* The last page of each region holds markers, outside the pattern. */
#define DATA_SIZE(sz) ((sz) - PAGE)

static const char in_flight[] = "written by the parent before the dump";
static const char after[] = "and this after the restore";

static volatile uint32_t *marker(uint8_t *region, size_t size, int slot) {
    return (volatile uint32_t *)(region + size - PAGE) + slot;
}

enum { SLOT_P = 0, SLOT_C1 = 1, SLOT_C3 = 2 };

static uint8_t *shm, *mfd;
static int ready_w = -1;

/* Each child says once that it is set up; the parent dumps nothing half-made. */
static void say_ready(void) {
    char c = 1;
    ZDTM_CHECK(write(ready_w, &c, 1) == 1, "ready pipe: %s", strerror(errno));
    close(ready_w);
}

static void check_shared(const char *who) {
    long bad = zdtm_check(shm, DATA_SIZE(SHM_SIZE), 1);
    ZDTM_CHECK(bad < 0, "%s: shared anonymous memory differs at %ld", who, bad);
    bad = zdtm_check(mfd, DATA_SIZE(MEMFD_SIZE), 2);
    ZDTM_CHECK(bad < 0, "%s: shared memfd memory differs at %ld", who, bad);
    ZDTM_CHECK(*marker(shm, SHM_SIZE, SLOT_P) == 0x50505050, "%s: the parent's write is not seen", who);
}

static int wait_ok(pid_t pid, const char *who) {
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        zdtm_msg("%s: waitpid(%d): %s", who, pid, strerror(errno));
        return 0;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        zdtm_msg("%s: child %d ended with status %#x", who, pid, st);
        return 0;
    }
    return 1;
}

static void grandchild(void) {
    say_ready();
    zdtm_wait();
    check_shared("C3");
    *marker(shm, SHM_SIZE, SLOT_C3) = 0x33333333;
    *marker(mfd, MEMFD_SIZE, SLOT_C3) = 0x33333333;
    exit(0);
}

static void child1(int rd) {
    pid_t c3 = fork();
    if (c3 == 0)
        grandchild();
    say_ready();
    zdtm_wait();
    check_shared("C1");
    *marker(shm, SHM_SIZE, SLOT_C1) = 0x11111111;
    *marker(mfd, MEMFD_SIZE, SLOT_C1) = 0x11111111;
    char buf[256];
    size_t want = sizeof(in_flight) - 1 + sizeof(after) - 1, got = 0;
    while (got < want) {
        ssize_t n = read(rd, buf + got, want - got);
        ZDTM_CHECK(n > 0, "C1: reading the pipe after %zu of %zu bytes: %s", got, want, n ? strerror(errno) : "EOF");
        got += (size_t)n;
    }
    ZDTM_CHECK(memcmp(buf, in_flight, sizeof(in_flight) - 1) == 0, "C1: the data in flight differs: %.*s", (int)got,
               buf);
    ZDTM_CHECK(memcmp(buf + sizeof(in_flight) - 1, after, sizeof(after) - 1) == 0,
               "C1: the data written after the restore differs: %.*s", (int)got, buf);
    kill(c3, SIGTERM);
    exit(wait_ok(c3, "C1") ? 0 : 1);
}

static void child2(int file) {
    say_ready();
    zdtm_wait();
    ZDTM_CHECK(write(file, "C", 1) == 1, "C2: write: %s", strerror(errno));
    exit(0);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    shm = mmap(NULL, SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ZDTM_CHECK(shm != MAP_FAILED, "mmap shared: %s", strerror(errno));
    zdtm_fill(shm, DATA_SIZE(SHM_SIZE), 1);
    int mfd_fd = memfd_create("tree_shared", MFD_CLOEXEC);
    ZDTM_CHECK(mfd_fd >= 0 && ftruncate(mfd_fd, MEMFD_SIZE) == 0, "memfd: %s", strerror(errno));
    mfd = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd_fd, 0);
    ZDTM_CHECK(mfd != MAP_FAILED, "mmap memfd: %s", strerror(errno));
    /* mfd_fd stays open: the mapping and the fd must come back as one memfd. */
    zdtm_fill(mfd, DATA_SIZE(MEMFD_SIZE), 2);

    int p[2];
    ZDTM_CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    int file = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
    ZDTM_CHECK(file >= 0, "open: %s", strerror(errno));
    char line[100];
    memset(line, 'P', sizeof(line));
    ZDTM_CHECK(write(file, line, sizeof(line)) == sizeof(line), "write: %s", strerror(errno));

    int rp[2];
    ZDTM_CHECK(pipe(rp) == 0, "pipe: %s", strerror(errno));
    ready_w = rp[1];
    pid_t c1 = fork();
    if (c1 == 0) {
        close(rp[0]);
        close(p[1]);
        close(file);
        child1(p[0]);
    }
    pid_t c2 = fork();
    if (c2 == 0) {
        close(rp[0]);
        close(p[0]);
        close(p[1]);
        child2(file);
    }
    close(p[0]);
    close(rp[1]);
    for (int got = 0; got < 3;) {
        char c;
        ssize_t n = read(rp[0], &c, 1);
        ZDTM_CHECK(n == 1 || (n < 0 && errno == EINTR), "P: ready pipe after %d of 3 children: %s", got,
                   n ? strerror(errno) : "EOF");
        got += n == 1;
    }
    close(rp[0]);
    ZDTM_CHECK(write(p[1], in_flight, sizeof(in_flight) - 1) == (ssize_t)sizeof(in_flight) - 1, "write pipe: %s",
               strerror(errno));
    zdtm_wait_tree_suspended();
    zdtm_ready();
    zdtm_wait();

    /* The children check that they see this write, made after the restore. */
    *marker(shm, SHM_SIZE, SLOT_P) = 0x50505050;
    check_shared("P");
    ZDTM_CHECK(write(p[1], after, sizeof(after) - 1) == (ssize_t)sizeof(after) - 1, "write pipe: %s",
               strerror(errno));
    kill(c1, SIGTERM);
    kill(c2, SIGTERM);
    int ok = wait_ok(c1, "P") & wait_ok(c2, "P");
    ZDTM_CHECK(ok, "a child failed");
    ZDTM_CHECK(*marker(shm, SHM_SIZE, SLOT_C1) == 0x11111111, "P: C1's write to shared memory is not seen");
    ZDTM_CHECK(*marker(shm, SHM_SIZE, SLOT_C3) == 0x33333333, "P: C3's write to shared memory is not seen");
    ZDTM_CHECK(*marker(mfd, MEMFD_SIZE, SLOT_C1) == 0x11111111, "P: C1's write to the memfd is not seen");
    ZDTM_CHECK(*marker(mfd, MEMFD_SIZE, SLOT_C3) == 0x33333333, "P: C3's write to the memfd is not seen");
    uint32_t via_fd = 0;
    ZDTM_CHECK(pread(mfd_fd, &via_fd, sizeof(via_fd), MEMFD_SIZE - PAGE + SLOT_C1 * sizeof(uint32_t)) ==
                       (ssize_t)sizeof(via_fd) && via_fd == 0x11111111,
               "P: C1's write through the mapping is not seen through the memfd's fd (%#x)", via_fd);
    off_t pos = lseek(file, 0, SEEK_CUR);
    ZDTM_CHECK(pos == 101, "P: the shared file offset is %lld after C2's write, expected 101", (long long)pos);
    char c = 0;
    ZDTM_CHECK(pread(file, &c, 1, 100) == 1 && c == 'C', "P: C2's byte is not at offset 100 ('%c')", c);
    zdtm_pass();
}
