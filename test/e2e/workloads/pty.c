/*
 * Ptys held by the process itself (the runner starts it as a session leader without a
 * terminal): pair A is its controlling terminal, with non-default termios and window size;
 * pair B is still locked (posix_openpt without unlockpt) and in packet mode; on pair C (default
 * termios: ONLCR) the slave wrote two lines the master has not read. After restore all keep
 * their /dev/pts index, state and fd numbers, pair A carries data both ways and pair C's master
 * reads exactly the bytes that were waiting ("\n" turned into "\r\n" once, not twice).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static int read_exact(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 3000) != 1)
            return -1;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int tty_nr_of_self(void) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f || !fgets(buf, sizeof(buf), f))
        return -1;
    fclose(f);
    char *p = strrchr(buf, ')');
    int tty = -1;
    /* ") S ppid pgrp session tty_nr" */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %d", &tty) != 1)
        return -1;
    return tty;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    ZDTM_CHECK(getsid(0) == getpid(), "the runner should start us as a session leader");

    int ma = posix_openpt(O_RDWR | O_NOCTTY);
    ZDTM_CHECK(ma >= 0 && grantpt(ma) == 0 && unlockpt(ma) == 0, "pty A: %s", strerror(errno));
    char name_a[64];
    ZDTM_CHECK(ptsname_r(ma, name_a, sizeof(name_a)) == 0, "ptsname A");
    /* Without O_NOCTTY: a session leader without a terminal takes this one. */
    int sa = open(name_a, O_RDWR);
    ZDTM_CHECK(sa >= 0, "open %s: %s", name_a, strerror(errno));
    ZDTM_CHECK(tcgetsid(sa) == getpid(), "pty A is not our controlling terminal");

    struct termios t;
    ZDTM_CHECK(tcgetattr(sa, &t) == 0, "tcgetattr");
    t.c_lflag &= ~(ECHO | ICANON);
    t.c_oflag &= ~OPOST;
    t.c_cc[VMIN] = 3;
    t.c_cc[VTIME] = 0;
    t.c_cc[VINTR] = 0x07;
    cfsetospeed(&t, B19200);
    cfsetispeed(&t, B19200);
    ZDTM_CHECK(tcsetattr(sa, TCSANOW, &t) == 0, "tcsetattr");
    struct winsize ws = {.ws_row = 37, .ws_col = 101, .ws_xpixel = 808, .ws_ypixel = 555};
    ZDTM_CHECK(ioctl(ma, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ");

    int mb = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    ZDTM_CHECK(mb >= 0, "pty B");
    int one = 1;
    ZDTM_CHECK(ioctl(mb, TIOCPKT, &one) == 0, "TIOCPKT");
    int index_b = -1;
    ZDTM_CHECK(ioctl(mb, TIOCGPTN, &index_b) == 0, "TIOCGPTN B");
    int mc = posix_openpt(O_RDWR | O_NOCTTY);
    ZDTM_CHECK(mc >= 0 && unlockpt(mc) == 0, "pty C");
    int sc = open(ptsname(mc), O_RDWR | O_NOCTTY);
    ZDTM_CHECK(sc >= 0, "pty C slave: %s", strerror(errno));
    ZDTM_CHECK(write(sc, "line1\nline2", 11) == 11, "pty C write");
    static const char waiting[] = "line1\r\nline2";
    int queued = 0;
    for (int i = 0; i < 4000 && queued < (int)sizeof(waiting) - 1; i++) {
        usleep(5000); /* the kernel moves written bytes to the master's side in a work item */
        ZDTM_CHECK(ioctl(mc, FIONREAD, &queued) == 0, "FIONREAD");
    }
    ZDTM_CHECK(queued == (int)sizeof(waiting) - 1, "pty C: %d bytes waiting", queued);
    struct stat st_a;
    ZDTM_CHECK(fstat(sa, &st_a) == 0, "fstat A");
    int tty_nr = tty_nr_of_self();
    ZDTM_CHECK(tty_nr == (int)st_a.st_rdev, "tty_nr %d, slave rdev %d", tty_nr, (int)st_a.st_rdev);

    zdtm_ready();
    zdtm_wait();

    char name_after[64];
    ZDTM_CHECK(ptsname_r(ma, name_after, sizeof(name_after)) == 0 && strcmp(name_a, name_after) == 0,
               "pty A was %s, is %s", name_a, name_after);
    int index_after = -1;
    ZDTM_CHECK(ioctl(mb, TIOCGPTN, &index_after) == 0 && index_after == index_b, "pty B was %d, is %d", index_b,
               index_after);
    int locked = 0, pkt = 0;
    ZDTM_CHECK(ioctl(mb, TIOCGPTLCK, &locked) == 0 && locked == 1, "pty B lost its lock (%d)", locked);
    ZDTM_CHECK(ioctl(mb, TIOCGPKT, &pkt) == 0 && pkt == 1, "pty B lost packet mode (%d)", pkt);
    ZDTM_CHECK((fcntl(mb, F_GETFL) & O_NONBLOCK) != 0, "pty B lost O_NONBLOCK");

    struct termios back;
    ZDTM_CHECK(tcgetattr(sa, &back) == 0, "tcgetattr after");
    ZDTM_CHECK(back.c_lflag == t.c_lflag && back.c_iflag == t.c_iflag && back.c_oflag == t.c_oflag &&
                   back.c_cflag == t.c_cflag,
               "termios flags %x/%x/%x/%x, expected %x/%x/%x/%x", back.c_iflag, back.c_oflag, back.c_cflag,
               back.c_lflag, t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag);
    ZDTM_CHECK(back.c_cc[VMIN] == 3 && back.c_cc[VINTR] == 0x07, "termios c_cc");
    ZDTM_CHECK(cfgetospeed(&back) == B19200, "speed");
    struct winsize wb;
    ZDTM_CHECK(ioctl(sa, TIOCGWINSZ, &wb) == 0 && wb.ws_row == 37 && wb.ws_col == 101 && wb.ws_xpixel == 808 &&
                   wb.ws_ypixel == 555,
               "window size %dx%d", wb.ws_col, wb.ws_row);

    ZDTM_CHECK(tcgetsid(sa) == getpid(), "pty A is not our controlling terminal after restore (sid %d)",
               (int)tcgetsid(sa));
    ZDTM_CHECK(tcgetpgrp(sa) == getpgrp(), "foreground group %d, ours %d", (int)tcgetpgrp(sa), (int)getpgrp());
    ZDTM_CHECK(tty_nr_of_self() == tty_nr, "tty_nr %d, was %d", tty_nr_of_self(), tty_nr);
    int dev = open("/dev/tty", O_RDWR);
    ZDTM_CHECK(dev >= 0, "/dev/tty: %s", strerror(errno));
    close(dev);

    char got_c[32] = {0};
    ZDTM_CHECK(read_exact(mc, got_c, sizeof(waiting) - 1) == 0 && memcmp(got_c, waiting, sizeof(waiting) - 1) == 0,
               "pty C: the master read '%s'", got_c);
    int left = -1;
    ZDTM_CHECK(ioctl(mc, FIONREAD, &left) == 0 && left == 0, "pty C: %d more bytes", left);

    /* Data both ways through the restored pair (raw: VMIN 3, no echo, no output processing). */
    char buf[8] = {0};
    ZDTM_CHECK(write(ma, "abc", 3) == 3, "write master");
    ZDTM_CHECK(read_exact(sa, buf, 3) == 0 && memcmp(buf, "abc", 3) == 0, "slave read '%.3s'", buf);
    ZDTM_CHECK(write(sa, "xyz\n", 4) == 4, "write slave");
    ZDTM_CHECK(read_exact(ma, buf, 4) == 0 && memcmp(buf, "xyz\n", 4) == 0, "master read '%.4s'", buf);
    zdtm_pass();
}
