/*
 * Unix sockets split between processes: a stream socketpair and a datagram socketpair whose
 * ends live in a parent and its child, with data queued in both directions at the dump. After
 * restore each side reads exactly what the other sent before, then they talk once more.
 * The parent prints PASS only if the child's checks held too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static int expect(int fd, const char *want) {
    char buf[64];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 2000) != 1)
        return 0;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

static void wait_queued(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ZDTM_CHECK(poll(&p, 1, 5000) == 1, "the child's data never arrived");
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int st[2], dg[2];
    ZDTM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, st) == 0, "socketpair stream");
    ZDTM_CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0, "socketpair dgram");
    pid_t c = fork();
    ZDTM_CHECK(c >= 0, "fork");
    if (c == 0) {
        close(st[0]);
        close(dg[0]);
        send(st[1], "child stream", 12, 0);
        send(dg[1], "child dgram", 11, 0);
        zdtm_wait();
        int ok = expect(st[1], "parent stream") && expect(dg[1], "parent dgram");
        ok = ok && send(st[1], "bye", 3, 0) == 3;
        _exit(ok ? 0 : 1);
    }
    close(st[1]);
    close(dg[1]);
    ZDTM_CHECK(send(st[0], "parent stream", 13, 0) == 13, "send");
    ZDTM_CHECK(send(dg[0], "parent dgram", 12, 0) == 12, "send");
    wait_queued(st[0]);
    wait_queued(dg[0]);
    zdtm_ready();
    zdtm_wait();
    ZDTM_CHECK(expect(st[0], "child stream"), "stream data from the child");
    ZDTM_CHECK(expect(dg[0], "child dgram"), "datagram from the child");
    kill(c, SIGTERM);
    int status = 0;
    ZDTM_CHECK(waitpid(c, &status, 0) == c, "waitpid: %s", strerror(errno));
    ZDTM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's checks failed (status %#x)", status);
    ZDTM_CHECK(expect(st[0], "bye"), "the child's last word");
    zdtm_pass();
}
