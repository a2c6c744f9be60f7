/*
 * File descriptors: a regular file open read-write at an offset, the same file
 * opened O_APPEND, an unlinked file with content, a pipe with unread data, and
 * /dev/null. After restore: offsets, flags and contents are as they were, the
 * unlinked file is still unlinked, the pipe still holds its data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

int main(int argc, char **argv) {
    zdtm_init(argc, argv);

    int rw = open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
    ZDTM_CHECK(rw >= 0, "open data.bin");
    uint8_t buf[20000];
    zdtm_fill(buf, sizeof(buf), 9);
    ZDTM_CHECK(write(rw, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write");
    ZDTM_CHECK(lseek(rw, 12345, SEEK_SET) == 12345, "lseek");

    int app = open("data.bin", O_WRONLY | O_APPEND);
    ZDTM_CHECK(app >= 0, "open append");

    int gone = open("ghost.bin", O_RDWR | O_CREAT | O_TRUNC, 0640);
    ZDTM_CHECK(gone >= 0, "open ghost");
    uint8_t gbuf[10000];
    zdtm_fill(gbuf, sizeof(gbuf), 10);
    ZDTM_CHECK(write(gone, gbuf, sizeof(gbuf)) == (ssize_t)sizeof(gbuf), "write ghost");
    ZDTM_CHECK(lseek(gone, 777, SEEK_SET) == 777, "lseek ghost");
    ZDTM_CHECK(unlink("ghost.bin") == 0, "unlink");

    int p[2];
    ZDTM_CHECK(pipe(p) == 0, "pipe");
    const char inflight[] = "bytes in flight through a pipe";
    ZDTM_CHECK(write(p[1], inflight, sizeof(inflight)) == (ssize_t)sizeof(inflight), "write pipe");

    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ZDTM_CHECK(devnull >= 0, "open /dev/null");

    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(lseek(rw, 0, SEEK_CUR) == 12345, "rw offset is %ld", (long)lseek(rw, 0, SEEK_CUR));
    ZDTM_CHECK((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw flags");
    uint8_t back[100];
    ZDTM_CHECK(read(rw, back, sizeof(back)) == (ssize_t)sizeof(back), "read rw");
    ZDTM_CHECK(memcmp(back, buf + 12345, sizeof(back)) == 0, "rw content");

    ZDTM_CHECK(fcntl(app, F_GETFL) & O_APPEND, "O_APPEND lost");
    ZDTM_CHECK(write(app, "tail", 4) == 4, "append write");
    struct stat st;
    ZDTM_CHECK(fstat(rw, &st) == 0 && st.st_size == (off_t)sizeof(buf) + 4, "append did not append");

    ZDTM_CHECK(fstat(gone, &st) == 0, "fstat ghost");
    ZDTM_CHECK(st.st_nlink == 0, "unlinked file has %ld links", (long)st.st_nlink);
    ZDTM_CHECK((st.st_mode & 0777) == 0640, "unlinked file mode %o", st.st_mode & 0777);
    ZDTM_CHECK(lseek(gone, 0, SEEK_CUR) == 777, "ghost offset");
    ZDTM_CHECK(pread(gone, gbuf, sizeof(gbuf), 0) == (ssize_t)sizeof(gbuf), "read ghost");
    ZDTM_CHECK(zdtm_check(gbuf, sizeof(gbuf), 10) < 0, "ghost content");

    char pbuf[64];
    ZDTM_CHECK(read(p[0], pbuf, sizeof(pbuf)) == (ssize_t)sizeof(inflight), "pipe data size");
    ZDTM_CHECK(memcmp(pbuf, inflight, sizeof(inflight)) == 0, "pipe data");

    ZDTM_CHECK(fcntl(devnull, F_GETFD) & FD_CLOEXEC, "/dev/null lost FD_CLOEXEC");
    char link[64] = {0};
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", devnull);
    ZDTM_CHECK(readlink(proc, link, sizeof(link) - 1) > 0 && strcmp(link, "/dev/null") == 0, "/dev/null is %s", link);
    zdtm_pass();
}
