/*
 * File locks held across the dump (run with --file-locks): two POSIX locks (a write lock on
 * bytes 0-9 and a read lock from byte 100 to EOF) and an OFD write lock on bytes 20-29 of one
 * file through two descriptions, an exclusive flock on a second file and a shared flock on a
 * third. After restore a helper process (which owns none of them) sees every one as held by
 * us: F_GETLK, F_OFD_GETLK and flock(LOCK_NB) from its own descriptions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static int setlk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* What another owner would hit: the conflicting lock's type and pid (F_UNLCK if none). */
static struct flock getlk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &fl) != 0)
        fl.l_type = -1;
    return fl;
}

/* Runs in a forked helper: exit 0 if every lock is seen as held by `owner`, else 1 + reason. */
static void check_from_helper(pid_t owner) {
    int f = open("locked", O_RDWR);
    ZDTM_CHECK(f >= 0, "helper: open locked");
    struct flock w = getlk(f, F_GETLK, F_RDLCK, 0, 10);
    ZDTM_CHECK(w.l_type == F_WRLCK && w.l_pid == owner, "POSIX write lock 0-9: type %d pid %d", w.l_type,
               (int)w.l_pid);
    struct flock r = getlk(f, F_GETLK, F_WRLCK, 100, 0);
    ZDTM_CHECK(r.l_type == F_RDLCK && r.l_pid == owner && r.l_start == 100 && r.l_len == 0,
               "POSIX read lock 100-EOF: type %d pid %d start %lld len %lld", r.l_type, (int)r.l_pid,
               (long long)r.l_start, (long long)r.l_len);
    struct flock rd = getlk(f, F_GETLK, F_RDLCK, 100, 50);
    ZDTM_CHECK(rd.l_type == F_UNLCK, "a read lock of bytes 100-149 should be allowed");
    struct flock o = getlk(f, F_OFD_GETLK, F_RDLCK, 20, 10);
    ZDTM_CHECK(o.l_type == F_WRLCK && o.l_pid == -1 && o.l_start == 20 && o.l_len == 10,
               "OFD write lock 20-29: type %d pid %d start %lld len %lld", o.l_type, (int)o.l_pid,
               (long long)o.l_start, (long long)o.l_len);
    struct flock gap = getlk(f, F_OFD_GETLK, F_WRLCK, 10, 10);
    ZDTM_CHECK(gap.l_type == F_UNLCK, "bytes 10-19 should be free (type %d)", gap.l_type);

    int x = open("flocked-ex", O_RDONLY);
    ZDTM_CHECK(x >= 0 && flock(x, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK,
               "the exclusive flock is not held");
    int s = open("flocked-sh", O_RDONLY);
    ZDTM_CHECK(s >= 0 && flock(s, LOCK_SH | LOCK_NB) == 0, "a shared flock next to ours failed");
    int s2 = open("flocked-sh", O_RDONLY);
    ZDTM_CHECK(s2 >= 0 && flock(s2, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK,
               "the shared flock is not held");
    _exit(0);
}

static void run_helper(pid_t owner) {
    pid_t h = fork();
    ZDTM_CHECK(h >= 0, "fork");
    if (h == 0) {
        check_from_helper(owner);
    }
    int st = 0;
    ZDTM_CHECK(waitpid(h, &st, 0) == h && WIFEXITED(st) && WEXITSTATUS(st) == 0, "helper failed (status %d)", st);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int a = open("locked", O_RDWR | O_CREAT, 0600);
    int b = open("locked", O_RDWR);
    int ex = open("flocked-ex", O_RDWR | O_CREAT, 0600);
    int sh = open("flocked-sh", O_RDWR | O_CREAT, 0600);
    ZDTM_CHECK(a >= 0 && b >= 0 && ex >= 0 && sh >= 0, "open: %s", strerror(errno));
    ZDTM_CHECK(ftruncate(a, 4096) == 0, "ftruncate");
    ZDTM_CHECK(setlk(a, F_SETLK, F_WRLCK, 0, 10) == 0, "POSIX write lock: %s", strerror(errno));
    ZDTM_CHECK(setlk(a, F_SETLK, F_RDLCK, 100, 0) == 0, "POSIX read lock: %s", strerror(errno));
    ZDTM_CHECK(setlk(b, F_OFD_SETLK, F_WRLCK, 20, 10) == 0, "OFD lock: %s", strerror(errno));
    ZDTM_CHECK(flock(ex, LOCK_EX) == 0 && flock(sh, LOCK_SH) == 0, "flock: %s", strerror(errno));
    run_helper(getpid());  /* the check itself must hold before the dump */

    zdtm_ready();
    zdtm_wait();
    run_helper(getpid());
    zdtm_pass();
}
