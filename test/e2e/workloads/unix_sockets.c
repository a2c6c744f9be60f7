/*
 * Unix sockets of one process: socketpairs (stream, datagram, seqpacket) with data queued in
 * both directions, a listening socket bound to a path with one connection queued (not yet
 * accepted), a listening socket with an abstract name and one accepted connection with data
 * queued both ways, a bound datagram socket with two datagrams queued, a stream end whose peer
 * was closed (data then EOF), and a half-closed pair. After restore each behaves as before:
 * the queued bytes arrive exactly once, in order, with their boundaries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

static socklen_t addr_of(struct sockaddr_un *a, const char *name, int abstract) {
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 0));
}

static void send_str(int fd, const char *s) {
    ZDTM_CHECK(send(fd, s, strlen(s), MSG_DONTWAIT) == (ssize_t)strlen(s), "send '%s': %s", s, strerror(errno));
}

/* Reads exactly one message (or, for stream sockets, exactly strlen(want) bytes). */
static void expect_msg(int fd, const char *want, const char *what) {
    char buf[256];
    size_t n = strlen(want), got = 0;
    int type = 0;
    socklen_t len = sizeof(type);
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ZDTM_CHECK(poll(&p, 1, 2000) == 1, "%s: nothing to read (want '%s', have %zu bytes)", what, want, got);
        ssize_t r = recv(fd, buf + got, sizeof(buf) - got, type == SOCK_STREAM ? 0 : 0);
        ZDTM_CHECK(r > 0, "%s: recv: %zd %s", what, r, strerror(errno));
        got += (size_t)r;
        if (type != SOCK_STREAM)
            break;
    }
    ZDTM_CHECK(got == n && memcmp(buf, want, n) == 0, "%s: got '%.*s', want '%s'", what, (int)got, buf, want);
}

static void expect_empty(int fd, const char *what) {
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    ZDTM_CHECK(r < 0 && errno == EAGAIN, "%s: more data than expected (%zd)", what, r);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int types[3] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    const char *tname[3] = {"stream", "dgram", "seqpacket"};
    int pairs[3][2];
    for (int i = 0; i < 3; i++) {
        ZDTM_CHECK(socketpair(AF_UNIX, types[i], 0, pairs[i]) == 0, "socketpair %s", tname[i]);
        send_str(pairs[i][0], "a->b one");
        send_str(pairs[i][0], "a->b two");
        send_str(pairs[i][1], "b->a");
    }

    /* A listener at a path with one queued connection, from a client that said nothing yet. */
    unlink("listener.sock");
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    socklen_t alen = addr_of(&a, "listener.sock", 0);
    ZDTM_CHECK(bind(lst, (struct sockaddr *)&a, alen) == 0, "bind listener.sock: %s", strerror(errno));
    ZDTM_CHECK(listen(lst, 7) == 0, "listen");
    ZDTM_CHECK(chmod("listener.sock", 0640) == 0, "chmod");
    int queued = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(queued, (struct sockaddr *)&a, alen) == 0, "connect to listener.sock");

    /* An abstract listener with an accepted connection, data queued both ways. */
    char abs_name[64];
    snprintf(abs_name, sizeof(abs_name), "criu-e2e-unix-%d", getpid());
    int alst = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un b;
    socklen_t blen = addr_of(&b, abs_name, 1);
    ZDTM_CHECK(bind(alst, (struct sockaddr *)&b, blen) == 0, "bind @%s", abs_name);
    ZDTM_CHECK(listen(alst, 3) == 0, "listen abstract");
    int cli = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    ZDTM_CHECK(connect(cli, (struct sockaddr *)&b, blen) == 0, "connect abstract");
    int acc = accept(alst, NULL, NULL);
    ZDTM_CHECK(acc >= 0, "accept");
    send_str(cli, "client hello");
    send_str(acc, "server hello");

    /* A bound datagram socket with two datagrams from an unnamed sender. */
    unlink("dgram.sock");
    int dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un c;
    socklen_t clen = addr_of(&c, "dgram.sock", 0);
    ZDTM_CHECK(bind(dg, (struct sockaddr *)&c, clen) == 0, "bind dgram.sock");
    int snd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ZDTM_CHECK(sendto(snd, "dg one", 6, 0, (struct sockaddr *)&c, clen) == 6, "sendto dgram.sock");
    ZDTM_CHECK(sendto(snd, "dg two!", 7, 0, (struct sockaddr *)&c, clen) == 7, "sendto dgram.sock");
    close(snd);

    /* A stream end whose peer is gone: the data sent before, then EOF. */
    int orphan[2];
    ZDTM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, orphan) == 0, "socketpair orphan");
    send_str(orphan[1], "last words");
    close(orphan[1]);

    /* Half-closed: the first end shut down writing after its data. */
    int half[2];
    ZDTM_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, half) == 0, "socketpair half");
    send_str(half[0], "before shutdown");
    ZDTM_CHECK(shutdown(half[0], SHUT_WR) == 0, "shutdown");
    fcntl(half[1], F_SETFL, O_NONBLOCK);

    zdtm_ready();
    zdtm_wait();

    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof(what), "%s pair", tname[i]);
        if (types[i] == SOCK_STREAM) {
            expect_msg(pairs[i][1], "a->b onea->b two", what);
        } else {
            expect_msg(pairs[i][1], "a->b one", what);
            expect_msg(pairs[i][1], "a->b two", what);
        }
        expect_msg(pairs[i][0], "b->a", what);
        expect_empty(pairs[i][0], what);
        expect_empty(pairs[i][1], what);
        send_str(pairs[i][1], "after");
        expect_msg(pairs[i][0], "after", what);
    }

    struct stat st;
    ZDTM_CHECK(stat("listener.sock", &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0640,
               "listener.sock: %s, mode %o", strerror(errno), st.st_mode & 0777);
    struct pollfd p = {.fd = lst, .events = POLLIN};
    ZDTM_CHECK(poll(&p, 1, 2000) == 1, "the queued connection is not there");
    int srv = accept(lst, NULL, NULL);
    ZDTM_CHECK(srv >= 0, "accept the queued connection: %s", strerror(errno));
    send_str(queued, "queued speaks");
    expect_msg(srv, "queued speaks", "queued connection");
    send_str(srv, "and is answered");
    expect_msg(queued, "and is answered", "queued connection");
    /* The listener takes new connections at its path. */
    int late = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(late, (struct sockaddr *)&a, alen) == 0, "new connection to listener.sock: %s", strerror(errno));

    expect_msg(acc, "client hello", "accepted");
    expect_msg(cli, "server hello", "accepted");
    int cli2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    ZDTM_CHECK(connect(cli2, (struct sockaddr *)&b, blen) == 0, "new connection to @%s: %s", abs_name, strerror(errno));
    struct sockaddr_un got;
    socklen_t glen = sizeof(got);
    ZDTM_CHECK(getsockname(alst, (struct sockaddr *)&got, &glen) == 0 && glen == blen &&
                   memcmp(got.sun_path, b.sun_path, blen - offsetof(struct sockaddr_un, sun_path)) == 0,
               "abstract listener lost its name");

    expect_msg(dg, "dg one", "bound dgram");
    expect_msg(dg, "dg two!", "bound dgram");
    expect_empty(dg, "bound dgram");

    expect_msg(orphan[0], "last words", "orphan");
    char ch;
    ZDTM_CHECK(recv(orphan[0], &ch, 1, 0) == 0, "orphan: no EOF after the data");

    expect_msg(half[1], "before shutdown", "half-closed");
    ZDTM_CHECK(recv(half[1], &ch, 1, 0) == 0, "half-closed: no EOF after the data");
    ZDTM_CHECK(send(half[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "half-closed: writing did not fail");
    send_str(half[1], "other way");
    expect_msg(half[0], "other way", "half-closed, other way");
    zdtm_pass();
}
