/*
 * A pty shared by a tree, as a terminal emulator or script(1) has it: the parent P holds the
 * master, its child C started a session of its own with the slave as controlling terminal
 * (termios: no echo, canonical). After restore C's controlling terminal, session and
 * foreground group are back, and a line typed by P on the master reaches C, whose answer comes
 * back to P.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static int read_line(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got + 1 < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            return -1;
        ssize_t r = read(fd, buf + got, 1);
        if (r <= 0)
            return -1;
        if (buf[got++] == '\n')
            break;
    }
    buf[got] = 0;
    return (int)got;
}

static void child(const char *name, int ready_w) {
    ZDTM_CHECK(setsid() == getpid(), "C: setsid: %s", strerror(errno));
    int s = open(name, O_RDWR); /* a session leader without a terminal takes this one */
    ZDTM_CHECK(s >= 0, "C: open %s: %s", name, strerror(errno));
    struct termios t;
    ZDTM_CHECK(tcgetattr(s, &t) == 0, "C: tcgetattr");
    t.c_lflag &= ~ECHO;
    t.c_oflag &= ~OPOST;
    ZDTM_CHECK(tcsetattr(s, TCSANOW, &t) == 0, "C: tcsetattr");
    ZDTM_CHECK(tcgetsid(s) == getpid(), "C: the pty is not our controlling terminal");
    char c = 1;
    ZDTM_CHECK(write(ready_w, &c, 1) == 1, "C: ready");
    close(ready_w);
    zdtm_wait();

    ZDTM_CHECK(tcgetsid(s) == getpid(), "C: after restore the pty is not our controlling terminal (sid %d)",
               (int)tcgetsid(s));
    ZDTM_CHECK(tcgetpgrp(s) == getpgrp(), "C: foreground group %d, ours %d", (int)tcgetpgrp(s), (int)getpgrp());
    int tty = open("/dev/tty", O_RDWR);
    ZDTM_CHECK(tty >= 0, "C: /dev/tty: %s", strerror(errno));
    char line[64];
    ZDTM_CHECK(read_line(tty, line, sizeof(line)) > 0 && strcmp(line, "ping\n") == 0, "C: read '%s'", line);
    ZDTM_CHECK(write(tty, "pong\n", 5) == 5, "C: write: %s", strerror(errno));
    exit(0);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    ZDTM_CHECK(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0, "openpt: %s", strerror(errno));
    char name[64];
    ZDTM_CHECK(ptsname_r(m, name, sizeof(name)) == 0, "ptsname");
    int rp[2];
    ZDTM_CHECK(pipe(rp) == 0, "pipe");
    pid_t c = fork();
    if (c == 0) {
        close(rp[0]);
        close(m);
        child(name, rp[1]);
    }
    close(rp[1]);
    char x;
    ZDTM_CHECK(read(rp[0], &x, 1) == 1, "P: the child did not get ready");
    close(rp[0]);
    zdtm_ready();
    zdtm_wait();

    char after[64];
    ZDTM_CHECK(ptsname_r(m, after, sizeof(after)) == 0 && strcmp(after, name) == 0, "P: pty was %s, is %s", name,
               after);
    kill(c, SIGTERM);
    ZDTM_CHECK(write(m, "ping\n", 5) == 5, "P: write: %s", strerror(errno));
    char line[64];
    ZDTM_CHECK(read_line(m, line, sizeof(line)) > 0 && strcmp(line, "pong\n") == 0, "P: read '%s'", line);
    int st = 0;
    ZDTM_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "P: child status %#x", st);
    zdtm_pass();
}
