/*
 * POSIX shared memory: a /dev/shm object (shm_open) mapped MAP_SHARED at two addresses and
 * kept open. After restore both mappings and the fd are the same tmpfs file: the content is
 * intact and a write through one mapping shows through the other and through the fd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zdtm.h"

#define SIZE (256 * 1024)

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    char name[64];
    snprintf(name, sizeof(name), "/criu-e2e-shm-%d", getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    ZDTM_CHECK(fd >= 0, "shm_open: %s", strerror(errno));
    ZDTM_CHECK(ftruncate(fd, SIZE) == 0, "ftruncate");
    uint8_t *m1 = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    uint8_t *m2 = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
    ZDTM_CHECK(m1 != MAP_FAILED && m2 != MAP_FAILED, "mmap");
    zdtm_fill(m1, SIZE, 77);

    zdtm_ready();
    zdtm_wait();

    long bad = zdtm_check(m2, SIZE, 77);
    ZDTM_CHECK(bad < 0, "content differs at offset %ld", bad);
    m1[4096] ^= 0xff;
    uint8_t b = 0;
    ZDTM_CHECK(m2[4096] == m1[4096], "the two mappings are not one object");
    ZDTM_CHECK(pread(fd, &b, 1, 4096) == 1 && b == m1[4096], "the fd is not the mapped object");
    ZDTM_CHECK(shm_unlink(name) == 0, "shm_unlink: %s", strerror(errno));
    zdtm_pass();
}
