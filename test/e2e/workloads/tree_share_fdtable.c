/*
 * Processes that share an fd table (clone(CLONE_FILES) without CLONE_VM) or cwd, root and umask
 * (clone(CLONE_FS)), through a dump and restore. P is the root:
 *   - F shares P's fd table. Before the dump P opened "shared.txt" at fd 40 and wrote 3 bytes,
 *     F made a pipe at fds 41/42 and wrote into it. After the restore kcmp still says "one
 *     table"; fd 40 is at offset 3 and F's write through it moves the offset P sees; the pipe
 *     still holds F's bytes; F opens "after.txt" at fd 43 and closes fd 42, and P sees both.
 *   - S shares P's cwd and umask. Before the dump S did chdir("dir1") and umask(027), which P
 *     sees. After the restore kcmp still says "one fs"; S does chdir("../dir2") and umask(077)
 *     and P sees both.
 *   - C is a plain child forked first: after the restore it still has a table of its own
 *     (no fd 40 or 43) and its own cwd.
 * Only the sharing that was there comes back (F does not share P's fs, S not its fd table).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

enum { FD_FILE = 40, FD_PIPE_R = 41, FD_PIPE_W = 42, FD_AFTER = 43 };
static const char in_pipe[] = "written by F before the dump";
static int ready_r = -1, ready_w = -1;

static int kcmp(pid_t a, pid_t b, int type) { return (int)syscall(SYS_kcmp, a, b, type, 0, 0); }

static void say_ready(void) {
    char c = 1;
    ZDTM_CHECK(write(ready_w, &c, 1) == 1, "ready pipe: %s", strerror(errno));
}

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static int link_of(int fd, char *buf, size_t n) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t r = readlink(path, buf, n - 1);
    if (r < 0)
        return -1;
    buf[r] = 0;
    return 0;
}

static int wait_ok(pid_t pid, const char *who) {
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        zdtm_msg("waitpid(%s %d): %s", who, pid, strerror(errno));
        return 0;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        zdtm_msg("%s (%d) ended with status %#x", who, pid, st);
        return 0;
    }
    return 1;
}

/* F: shares P's fd table. */
static int child_f(void *arg) {
    (void)arg;
    int p[2];
    ZDTM_CHECK(pipe(p) == 0, "F: pipe: %s", strerror(errno));
    ZDTM_CHECK(dup2(p[0], FD_PIPE_R) == FD_PIPE_R && dup2(p[1], FD_PIPE_W) == FD_PIPE_W, "F: dup2: %s",
               strerror(errno));
    close(p[0]);
    close(p[1]);
    ZDTM_CHECK(write(FD_PIPE_W, in_pipe, sizeof(in_pipe) - 1) == (ssize_t)sizeof(in_pipe) - 1, "F: write pipe");
    say_ready();
    zdtm_wait();
    ZDTM_CHECK(kcmp(getpid(), getppid(), KCMP_FILES) == 0, "F: no longer shares its parent's fd table");
    ZDTM_CHECK(write(FD_FILE, "F", 1) == 1, "F: write fd %d: %s", FD_FILE, strerror(errno));
    int a = open("after.txt", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ZDTM_CHECK(a >= 0 && dup3(a, FD_AFTER, O_CLOEXEC) == FD_AFTER, "F: after.txt: %s", strerror(errno));
    close(a);
    ZDTM_CHECK(close(FD_PIPE_W) == 0, "F: close fd %d: %s", FD_PIPE_W, strerror(errno));
    exit(0);
}

/* S: shares P's cwd, root and umask. */
static int child_s(void *arg) {
    (void)arg;
    /* A table of its own, copied from P's: only the ready pipe's write end is needed. */
    close(FD_FILE);
    close(ready_r);
    ZDTM_CHECK(chdir("dir1") == 0, "S: chdir dir1: %s", strerror(errno));
    umask(027);
    say_ready();
    close(ready_w);
    zdtm_wait();
    ZDTM_CHECK(kcmp(getpid(), getppid(), KCMP_FS) == 0, "S: no longer shares its parent's fs");
    ZDTM_CHECK(chdir("../dir2") == 0, "S: chdir ../dir2: %s", strerror(errno));
    umask(077);
    exit(0);
}

static pid_t clone_child(int (*fn)(void *), int flags) {
    size_t size = 256 * 1024;
    char *stack = malloc(size);
    ZDTM_CHECK(stack, "malloc");
    pid_t pid = clone(fn, stack + size, flags | SIGCHLD, NULL);
    ZDTM_CHECK(pid > 0, "clone(%#x): %s", flags, strerror(errno));
    return pid;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    ZDTM_CHECK(mkdir("dir1", 0700) == 0 && mkdir("dir2", 0700) == 0, "mkdir: %s", strerror(errno));
    umask(022);
    int rp[2];
    ZDTM_CHECK(pipe(rp) == 0, "pipe: %s", strerror(errno));
    ready_r = rp[0];
    ready_w = rp[1];

    pid_t c = fork();
    ZDTM_CHECK(c >= 0, "fork: %s", strerror(errno));
    if (c == 0) {
        close(rp[0]);
        say_ready();
        close(rp[1]);
        zdtm_wait();
        ZDTM_CHECK(fcntl(FD_FILE, F_GETFD) < 0 && fcntl(FD_AFTER, F_GETFD) < 0, "C: sees fds of P's table");
        char cwd[4096];
        ZDTM_CHECK(getcwd(cwd, sizeof(cwd)) && !ends_with(cwd, "/dir1") && !ends_with(cwd, "/dir2"),
                   "C: its cwd moved with P's: %s", cwd);
        exit(0);
    }

    int file = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
    ZDTM_CHECK(file >= 0 && dup2(file, FD_FILE) == FD_FILE, "open: %s", strerror(errno));
    close(file);
    ZDTM_CHECK(write(FD_FILE, "abc", 3) == 3, "write: %s", strerror(errno));

    /* S first: a copy of P's table taken later could hold F's pipe. */
    pid_t s = clone_child(child_s, CLONE_FS);
    pid_t f = clone_child(child_f, CLONE_FILES);
    for (int got = 0; got < 3;) {
        char ch;
        ssize_t n = read(rp[0], &ch, 1);
        ZDTM_CHECK(n == 1 || (n < 0 && errno == EINTR), "ready pipe after %d of 3: %s", got, n ? strerror(errno) : "EOF");
        got += n == 1;
    }
    /* One table with F: closing them here closes them for F too, which is done with them. */
    close(rp[0]);
    close(rp[1]);
    char cwd[4096];
    ZDTM_CHECK(getcwd(cwd, sizeof(cwd)) && ends_with(cwd, "/dir1"), "S's chdir is not seen: %s", cwd);
    ZDTM_CHECK(kcmp(getpid(), f, KCMP_FILES) == 0 && kcmp(getpid(), s, KCMP_FS) == 0, "kcmp before the dump");
    zdtm_wait_tree_suspended();
    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(kcmp(getpid(), f, KCMP_FILES) == 0, "P and F no longer share one fd table");
    ZDTM_CHECK(kcmp(getpid(), s, KCMP_FS) == 0, "P and S no longer share cwd/root/umask");
    ZDTM_CHECK(kcmp(getpid(), f, KCMP_FS) != 0, "P and F share an fs they did not share");
    ZDTM_CHECK(kcmp(getpid(), s, KCMP_FILES) != 0, "P and S share an fd table they did not share");
    ZDTM_CHECK(kcmp(getpid(), c, KCMP_FILES) != 0 && kcmp(getpid(), c, KCMP_FS) != 0, "P and C share something");
    ZDTM_CHECK(getcwd(cwd, sizeof(cwd)) && ends_with(cwd, "/dir1"), "cwd after the restore: %s", cwd);
    mode_t m = umask(022);
    umask(m);
    ZDTM_CHECK(m == 027, "umask after the restore %03o, expected 027", m);
    off_t pos = lseek(FD_FILE, 0, SEEK_CUR);
    ZDTM_CHECK(pos == 3, "fd %d at offset %lld after the restore, expected 3", FD_FILE, (long long)pos);
    char buf[64] = {0};
    ZDTM_CHECK(read(FD_PIPE_R, buf, sizeof(in_pipe) - 1) == (ssize_t)sizeof(in_pipe) - 1 &&
                   memcmp(buf, in_pipe, sizeof(in_pipe) - 1) == 0,
               "the pipe F made holds '%s'", buf);

    kill(f, SIGTERM);
    ZDTM_CHECK(wait_ok(f, "F"), "F failed");
    pos = lseek(FD_FILE, 0, SEEK_CUR);
    ZDTM_CHECK(pos == 4, "F's write through fd %d: offset %lld here, expected 4", FD_FILE, (long long)pos);
    char link[4096];
    ZDTM_CHECK(link_of(FD_AFTER, link, sizeof(link)) == 0 && ends_with(link, "/after.txt"),
               "fd %d that F opened after the restore is not seen here (%s)", FD_AFTER, strerror(errno));
    ZDTM_CHECK(fcntl(FD_AFTER, F_GETFD) == FD_CLOEXEC, "fd %d flags", FD_AFTER);
    ZDTM_CHECK(fcntl(FD_PIPE_W, F_GETFD) < 0 && errno == EBADF, "fd %d that F closed is still open here", FD_PIPE_W);
    ZDTM_CHECK(read(FD_PIPE_R, buf, 1) == 0, "the pipe has no end of file after F closed its only writer");

    kill(s, SIGTERM);
    ZDTM_CHECK(wait_ok(s, "S"), "S failed");
    ZDTM_CHECK(getcwd(cwd, sizeof(cwd)) && ends_with(cwd, "/dir2"), "S's chdir after the restore is not seen: %s",
               cwd);
    m = umask(022);
    ZDTM_CHECK(m == 077, "S's umask after the restore is not seen: %03o", m);

    kill(c, SIGTERM);
    ZDTM_CHECK(wait_ok(c, "C"), "C failed");
    zdtm_pass();
}
