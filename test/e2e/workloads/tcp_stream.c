/*
 * An established TCP connection inside the dumped tree, with a peer outside it (tcp_peer.c,
 * started by test/e2e/tcp_run.py), streaming both ways through dump and restore
 * (--tcp-established). See lib/tcp_stream.h for the stream and its checks.
 *
 *   e2e_tcp_stream connect ADDR PORT   the client: connects to the peer's listener
 *   e2e_tcp_stream listen ADDR         the server: listens on ADDR, port 0 (prints "PORT n"),
 *                                      accepts the peer and keeps the listener open
 *
 * Options the process sets must survive too: TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE,
 * SO_REUSEADDR on the server's sockets, O_NONBLOCK. After SIGTERM it checks them and the
 * stream, and prints PASS.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>

#include "tcp_stream.h"
#include "zdtm.h"

static struct tcp_stream st;

static int get_opt(int fd, int level, int opt) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, opt, &v, &len) != 0)
        return -1;
    return v;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    if (argc < 3)
        zdtm_fail("usage: %s connect ADDR PORT | listen ADDR", argv[0]);
    int listening = strcmp(argv[1], "listen") == 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (tcp_stream_addr(argv[2], listening ? "0" : (argc > 3 ? argv[3] : ""), &ss, &len) != 0)
        zdtm_fail("bad address %s", argv[2]);
    int one = 1, fd, lfd = -1;
    if (listening) {
        lfd = socket(ss.ss_family, SOCK_STREAM, 0);
        ZDTM_CHECK(lfd >= 0, "socket: %m");
        ZDTM_CHECK(setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR: %m");
        ZDTM_CHECK(bind(lfd, (struct sockaddr *)&ss, len) == 0, "bind: %m");
        ZDTM_CHECK(listen(lfd, 4) == 0, "listen: %m");
        ZDTM_CHECK(getsockname(lfd, (struct sockaddr *)&ss, &len) == 0, "getsockname: %m");
        int port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
        printf("PORT %d\n", port);
        fflush(stdout);
        struct pollfd p = {lfd, POLLIN, 0};
        ZDTM_CHECK(poll(&p, 1, 60000) == 1, "no connection from the peer within 60 s");
        fd = accept(lfd, NULL, NULL);
        ZDTM_CHECK(fd >= 0, "accept: %m");
    } else {
        fd = socket(ss.ss_family, SOCK_STREAM, 0);
        ZDTM_CHECK(fd >= 0, "socket: %m");
        ZDTM_CHECK(connect(fd, (struct sockaddr *)&ss, len) == 0, "connect to %s port %s: %m", argv[2], argv[3]);
    }
    int idle = 77;
    ZDTM_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0, "TCP_NODELAY: %m");
    ZDTM_CHECK(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == 0, "SO_KEEPALIVE: %m");
    ZDTM_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == 0, "TCP_KEEPIDLE: %m");
    ZDTM_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK: %m");
    tcp_stream_init(&st, fd, 1, 2);
    zdtm_ready();

    while (!zdtm_stop && tcp_stream_step(&st) == 0)
        ;
    if (st.err[0]) {
        zdtm_msg("stream stopped: %s (rx %llu tx %llu)", st.err, (unsigned long long)st.rx,
                 (unsigned long long)st.tx);
        while (!zdtm_stop)
            zdtm_wait();
        zdtm_fail("the connection broke: %s", st.err);
    }
    ZDTM_CHECK(st.rx > 0 && st.tx > 0, "nothing streamed (rx %llu tx %llu)", (unsigned long long)st.rx,
               (unsigned long long)st.tx);
    ZDTM_CHECK(get_opt(fd, IPPROTO_TCP, TCP_NODELAY) == 1, "TCP_NODELAY lost");
    ZDTM_CHECK(get_opt(fd, SOL_SOCKET, SO_KEEPALIVE) == 1, "SO_KEEPALIVE lost");
    ZDTM_CHECK(get_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE) == idle, "TCP_KEEPIDLE is %d, not %d",
               get_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle);
    ZDTM_CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
    if (listening) {
        /* The accepted socket inherits SO_REUSEADDR from the listener. */
        ZDTM_CHECK(get_opt(fd, SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR of the accepted socket lost");
        ZDTM_CHECK(get_opt(lfd, SOL_SOCKET, SO_ACCEPTCONN) == 1, "the listener no longer listens");
    }
    zdtm_msg("streamed: read %llu bytes, wrote %llu bytes", (unsigned long long)st.rx, (unsigned long long)st.tx);
    zdtm_pass();
}
