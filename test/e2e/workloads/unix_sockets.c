/*
 * Unix sockets of one process: socketpairs (stream, datagram, seqpacket) with data queued in
 * both directions, a listening socket bound to a path with one connection queued (not yet
 * accepted), a listening socket with an abstract name and one accepted connection with data
 * queued both ways, a bound datagram socket with two datagrams queued, a stream end whose peer
 * was closed (data then EOF), and a half-closed pair. After restore each behaves as before:
 * the queued bytes arrive exactly once, in order, with their boundaries.
 *
 * Names: getsockname()/getpeername() of listeners, accepted ends and clients (path and
 * abstract; a bound client; an accepted end whose listener was closed, whose name is then held
 * by nobody; an accepted end whose client closed and a client whose accepted end closed), and
 * the sender names recvfrom() gives for queued datagrams (unnamed, a bound sender still open,
 * an abstract sender and a relative-path sender that are gone, the socket itself).
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

/* getsockname (peer 0) or getpeername (peer 1) of fd is `want` (NULL: unnamed). */
static void expect_name(int fd, int peer, const char *want, int abstract, const char *what) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    socklen_t len = sizeof(a);
    int r = peer ? getpeername(fd, (struct sockaddr *)&a, &len) : getsockname(fd, (struct sockaddr *)&a, &len);
    ZDTM_CHECK(r == 0, "%s: %s: %s", what, peer ? "getpeername" : "getsockname", strerror(errno));
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (!want) {
        ZDTM_CHECK(n == 0, "%s: %s is '%.*s', want unnamed", what, peer ? "peer name" : "name", (int)n, a.sun_path);
        return;
    }
    if (abstract)
        ZDTM_CHECK(n == strlen(want) + 1 && a.sun_path[0] == 0 && memcmp(a.sun_path + 1, want, n - 1) == 0,
                   "%s: %s is '%.*s' (%zu bytes), want '@%s'", what, peer ? "peer name" : "name",
                   n ? (int)n - 1 : 0, a.sun_path + 1, n, want);
    else
        ZDTM_CHECK(n >= strlen(want) && strncmp(a.sun_path, want, sizeof(a.sun_path)) == 0,
                   "%s: %s is '%.*s', want '%s'", what, peer ? "peer name" : "name", (int)n, a.sun_path, want);
}

/* Reads one datagram: `want`, sent by `from` (NULL: unnamed). */
static void expect_from(int fd, const char *want, const char *from, int abstract, const char *what) {
    char buf[256];
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    socklen_t len = sizeof(a);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ZDTM_CHECK(poll(&p, 1, 10000) == 1, "%s: nothing to read (want '%s')", what, want);
    ssize_t r = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&a, &len);
    ZDTM_CHECK(r == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)r) == 0, "%s: got '%.*s', want '%s'", what,
               r > 0 ? (int)r : 0, buf, want);
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (!from)
        ZDTM_CHECK(n == 0, "%s: '%s' comes from '%.*s', want an unnamed sender", what, want, (int)n, a.sun_path);
    else if (abstract)
        ZDTM_CHECK(n == strlen(from) + 1 && a.sun_path[0] == 0 && memcmp(a.sun_path + 1, from, n - 1) == 0,
                   "%s: '%s' comes from '%.*s', want '@%s'", what, want, n ? (int)n - 1 : 0, a.sun_path + 1, from);
    else
        ZDTM_CHECK(n >= strlen(from) && strncmp(a.sun_path, from, sizeof(a.sun_path)) == 0,
                   "%s: '%s' comes from '%.*s', want '%s'", what, want, (int)n, a.sun_path, from);
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
    /* Accepted from it: a client bound to a path of its own, and one that closed after a word. */
    unlink("client.sock");
    int bcli = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un cb;
    socklen_t cblen = addr_of(&cb, "client.sock", 0);
    ZDTM_CHECK(bind(bcli, (struct sockaddr *)&cb, cblen) == 0, "bind client.sock: %s", strerror(errno));
    ZDTM_CHECK(connect(bcli, (struct sockaddr *)&a, alen) == 0, "connect client.sock to listener.sock");
    int bacc = accept(lst, NULL, NULL);
    ZDTM_CHECK(bacc >= 0, "accept client.sock");
    send_str(bcli, "bound client");
    int gone_cli = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(gone_cli, (struct sockaddr *)&a, alen) == 0, "connect to listener.sock");
    int lonely = accept(lst, NULL, NULL);
    ZDTM_CHECK(lonely >= 0, "accept");
    send_str(gone_cli, "client bye");
    close(gone_cli);
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
    /* A client whose accepted end said a word and closed. */
    int cli3 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    ZDTM_CHECK(connect(cli3, (struct sockaddr *)&b, blen) == 0, "connect abstract");
    int acc3 = accept(alst, NULL, NULL);
    ZDTM_CHECK(acc3 >= 0, "accept");
    send_str(acc3, "server bye");
    close(acc3);

    /* An accepted end whose abstract listener was closed: the name is held by nobody now. */
    char gone_name[64];
    snprintf(gone_name, sizeof(gone_name), "criu-e2e-unix-gone-%d", getpid());
    struct sockaddr_un g;
    socklen_t glen0 = addr_of(&g, gone_name, 1);
    int glst = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(bind(glst, (struct sockaddr *)&g, glen0) == 0 && listen(glst, 1) == 0, "listen @%s", gone_name);
    int gcli = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(gcli, (struct sockaddr *)&g, glen0) == 0, "connect @%s", gone_name);
    int gacc = accept(glst, NULL, NULL);
    ZDTM_CHECK(gacc >= 0, "accept @%s", gone_name);
    close(glst);
    send_str(gacc, "orphaned server");

    /* A listener at a path closed after an accept, its file removed, and a new listener bound
     * there: the accepted end keeps the name, the new listener the file. */
    unlink("relisten.sock");
    struct sockaddr_un rl;
    socklen_t rllen = addr_of(&rl, "relisten.sock", 0);
    int old_lst = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(bind(old_lst, (struct sockaddr *)&rl, rllen) == 0 && listen(old_lst, 1) == 0, "listen relisten.sock");
    int rcli = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(rcli, (struct sockaddr *)&rl, rllen) == 0, "connect relisten.sock");
    int racc = accept(old_lst, NULL, NULL);
    ZDTM_CHECK(racc >= 0, "accept relisten.sock");
    close(old_lst);
    ZDTM_CHECK(unlink("relisten.sock") == 0, "unlink relisten.sock");
    int new_lst = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(bind(new_lst, (struct sockaddr *)&rl, rllen) == 0 && listen(new_lst, 1) == 0,
               "listen relisten.sock again");

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
    /* ... and from named senders: one still open, two gone (abstract; a relative path whose file
     * was removed too), and the socket itself. */
    unlink("sender.sock");
    int named = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sn;
    socklen_t snlen = addr_of(&sn, "sender.sock", 0);
    ZDTM_CHECK(bind(named, (struct sockaddr *)&sn, snlen) == 0, "bind sender.sock");
    ZDTM_CHECK(sendto(named, "from sender", 11, 0, (struct sockaddr *)&c, clen) == 11, "sendto from sender.sock");
    char dgs_name[64];
    snprintf(dgs_name, sizeof(dgs_name), "criu-e2e-unix-dgs-%d", getpid());
    int dgs = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un ds;
    socklen_t dslen = addr_of(&ds, dgs_name, 1);
    ZDTM_CHECK(bind(dgs, (struct sockaddr *)&ds, dslen) == 0, "bind @%s", dgs_name);
    ZDTM_CHECK(sendto(dgs, "from abstract", 13, 0, (struct sockaddr *)&c, clen) == 13, "sendto from @%s", dgs_name);
    close(dgs);
    unlink("gone.sock");
    int gs = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un gsa;
    socklen_t gsalen = addr_of(&gsa, "gone.sock", 0);
    ZDTM_CHECK(bind(gs, (struct sockaddr *)&gsa, gsalen) == 0, "bind gone.sock");
    ZDTM_CHECK(sendto(gs, "from gone", 9, 0, (struct sockaddr *)&c, clen) == 9, "sendto from gone.sock");
    close(gs);
    ZDTM_CHECK(unlink("gone.sock") == 0, "unlink gone.sock");
    ZDTM_CHECK(sendto(dg, "from self", 9, 0, (struct sockaddr *)&c, clen) == 9, "sendto from dgram.sock itself");
    /* A bound datagram socket connected to dgram.sock: a datagram from sender.sock queued before it
     * connected, then dgram.sock's reply. */
    unlink("reply.sock");
    int rc = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un ra;
    socklen_t ralen = addr_of(&ra, "reply.sock", 0);
    ZDTM_CHECK(bind(rc, (struct sockaddr *)&ra, ralen) == 0, "bind reply.sock");
    ZDTM_CHECK(sendto(named, "early", 5, 0, (struct sockaddr *)&ra, ralen) == 5, "sendto reply.sock");
    ZDTM_CHECK(connect(rc, (struct sockaddr *)&c, clen) == 0, "connect reply.sock to dgram.sock");
    ZDTM_CHECK(sendto(dg, "reply", 5, 0, (struct sockaddr *)&ra, ralen) == 5, "reply to reply.sock");

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
    char ch;
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

    expect_from(dg, "dg one", NULL, 0, "bound dgram");
    expect_from(dg, "dg two!", NULL, 0, "bound dgram");
    expect_from(dg, "from sender", "sender.sock", 0, "bound dgram");
    expect_from(dg, "from abstract", dgs_name, 1, "bound dgram");
    expect_from(dg, "from gone", "gone.sock", 0, "bound dgram");
    expect_from(dg, "from self", "dgram.sock", 0, "bound dgram");
    expect_empty(dg, "bound dgram");
    ZDTM_CHECK(stat("gone.sock", &st) != 0 && errno == ENOENT, "gone.sock exists after restore");
    ZDTM_CHECK(stat("sender.sock", &st) == 0 && S_ISSOCK(st.st_mode), "sender.sock: %s", strerror(errno));
    ZDTM_CHECK(sendto(named, "again", 5, 0, (struct sockaddr *)&c, clen) == 5, "sendto from sender.sock");
    expect_from(dg, "again", "sender.sock", 0, "bound dgram, new datagram");
    expect_from(rc, "early", "sender.sock", 0, "connected dgram");
    expect_from(rc, "reply", "dgram.sock", 0, "connected dgram");
    expect_empty(rc, "connected dgram");
    expect_name(rc, 1, "dgram.sock", 0, "connected dgram");
    ZDTM_CHECK(sendto(named, "late", 4, MSG_DONTWAIT, (struct sockaddr *)&ra, ralen) < 0 && errno == EPERM,
               "a connected datagram socket took a datagram from another socket: %s", strerror(errno));
    send_str(rc, "request");
    expect_from(dg, "request", "reply.sock", 0, "bound dgram, from the connected one");

    /* Names of listeners, accepted ends and clients. */
    expect_name(lst, 0, "listener.sock", 0, "path listener");
    expect_name(bacc, 0, "listener.sock", 0, "accepted from listener.sock");
    expect_name(bacc, 1, "client.sock", 0, "accepted from listener.sock");
    expect_name(bcli, 0, "client.sock", 0, "bound client");
    expect_name(bcli, 1, "listener.sock", 0, "bound client");
    expect_msg(bacc, "bound client", "bound client's connection");
    send_str(bacc, "answer");
    expect_msg(bcli, "answer", "bound client's connection");
    expect_name(queued, 1, "listener.sock", 0, "queued client");
    expect_name(queued, 0, NULL, 0, "queued client");
    expect_name(lonely, 0, "listener.sock", 0, "accepted end whose client closed");
    expect_msg(lonely, "client bye", "accepted end whose client closed");
    ZDTM_CHECK(recv(lonely, &ch, 1, 0) == 0, "accepted end whose client closed: no EOF after the data");
    expect_name(alst, 0, abs_name, 1, "abstract listener");
    expect_name(acc, 0, abs_name, 1, "accepted from the abstract listener");
    expect_name(acc, 1, NULL, 0, "accepted from the abstract listener");
    expect_name(cli, 0, NULL, 0, "client of the abstract listener");
    expect_name(cli, 1, abs_name, 1, "client of the abstract listener");
    expect_name(cli3, 1, abs_name, 1, "client whose accepted end closed");
    expect_msg(cli3, "server bye", "client whose accepted end closed");
    ZDTM_CHECK(recv(cli3, &ch, 1, 0) == 0, "client whose accepted end closed: no EOF after the data");
    expect_name(gacc, 0, gone_name, 1, "accepted end of a closed listener");
    expect_name(gcli, 1, gone_name, 1, "client of a closed listener");
    expect_msg(gcli, "orphaned server", "accepted end of a closed listener");
    send_str(gcli, "still there");
    expect_msg(gacc, "still there", "accepted end of a closed listener");
    expect_name(racc, 0, "relisten.sock", 0, "accepted end of a listener replaced at its path");
    expect_name(rcli, 1, "relisten.sock", 0, "client of a listener replaced at its path");
    send_str(rcli, "replaced");
    expect_msg(racc, "replaced", "accepted end of a listener replaced at its path");
    expect_name(new_lst, 0, "relisten.sock", 0, "the new listener at relisten.sock");
    struct stat rst2;
    ZDTM_CHECK(stat("relisten.sock", &rst2) == 0 && S_ISSOCK(rst2.st_mode), "relisten.sock: %s", strerror(errno));
    int rcli2 = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(rcli2, (struct sockaddr *)&rl, rllen) == 0, "connect to the new listener: %s", strerror(errno));
    int racc2 = accept(new_lst, NULL, NULL);
    ZDTM_CHECK(racc2 >= 0, "the new listener takes the connection: %s", strerror(errno));
    send_str(rcli2, "new one");
    expect_msg(racc2, "new one", "connection to the new listener");
    int again = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(bind(again, (struct sockaddr *)&g, glen0) == 0, "@%s is held by someone after restore: %s", gone_name,
               strerror(errno));

    expect_msg(orphan[0], "last words", "orphan");
    ZDTM_CHECK(recv(orphan[0], &ch, 1, 0) == 0, "orphan: no EOF after the data");

    expect_msg(half[1], "before shutdown", "half-closed");
    ZDTM_CHECK(recv(half[1], &ch, 1, 0) == 0, "half-closed: no EOF after the data");
    ZDTM_CHECK(send(half[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "half-closed: writing did not fail");
    send_str(half[1], "other way");
    expect_msg(half[0], "other way", "half-closed, other way");
    zdtm_pass();
}
