/*
 * TCP and UDP sockets of one process: TCP listeners on 127.0.0.1 (SO_REUSEADDR, non-blocking)
 * and on [::1] (IPV6_V6ONLY, SO_KEEPALIVE, TCP_NODELAY), and on each family a bound UDP socket
 * plus a UDP socket connected to it (SO_RCVBUF set), with one datagram queued in each direction.
 * After restore: the same ports, options and peers; the queued datagrams arrive once, from the
 * right sender; the listeners accept new connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static socklen_t loopback(int family, struct sockaddr_storage *ss, unsigned port) {
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof(*s);
    }
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    s->sin6_addr = in6addr_loopback;
    return sizeof(*s);
}

static unsigned port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ZDTM_CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname: %s", strerror(errno));
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int opt(int fd, int level, int name) {
    int v = 0;
    socklen_t len = sizeof(v);
    ZDTM_CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt %d/%d", level, name);
    return v;
}

struct udp_pair {
    int family, server, client;
    unsigned sport, cport;
    int rcvbuf;
};

static void setup_udp(struct udp_pair *u, int family) {
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, &ss, 0);
    u->family = family;
    u->server = socket(family, SOCK_DGRAM, 0);
    ZDTM_CHECK(bind(u->server, (struct sockaddr *)&ss, len) == 0, "bind udp server");
    u->sport = port_of(u->server);
    u->client = socket(family, SOCK_DGRAM, 0);
    int sz = 50000;
    setsockopt(u->client, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    u->rcvbuf = opt(u->client, SOL_SOCKET, SO_RCVBUF);
    len = loopback(family, &ss, u->sport);
    ZDTM_CHECK(connect(u->client, (struct sockaddr *)&ss, len) == 0, "connect udp client");
    u->cport = port_of(u->client);
    ZDTM_CHECK(send(u->client, "to server", 9, 0) == 9, "udp send");
    len = loopback(family, &ss, u->cport);
    ZDTM_CHECK(sendto(u->server, "to client!", 10, 0, (struct sockaddr *)&ss, len) == 10, "udp sendto");
}

static void check_udp(struct udp_pair *u) {
    const char *fam = u->family == AF_INET ? "udp4" : "udp6";
    ZDTM_CHECK(port_of(u->server) == u->sport && port_of(u->client) == u->cport, "%s: ports changed", fam);
    ZDTM_CHECK(opt(u->client, SOL_SOCKET, SO_RCVBUF) == u->rcvbuf, "%s: SO_RCVBUF %d, want %d", fam,
               opt(u->client, SOL_SOCKET, SO_RCVBUF), u->rcvbuf);
    char buf[64];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(u->server, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
    ZDTM_CHECK(n == 9 && memcmp(buf, "to server", 9) == 0, "%s: server queue: %zd %s", fam, n, strerror(errno));
    unsigned fport = from.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&from)->sin_port)
                                               : ntohs(((struct sockaddr_in6 *)&from)->sin6_port);
    ZDTM_CHECK(fport == u->cport, "%s: datagram from port %u, want %u", fam, fport, u->cport);
    n = recv(u->client, buf, sizeof(buf), MSG_DONTWAIT);
    ZDTM_CHECK(n == 10 && memcmp(buf, "to client!", 10) == 0, "%s: client queue: %zd %s", fam, n, strerror(errno));
    ZDTM_CHECK(recv(u->client, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN, "%s: extra datagram", fam);
    ZDTM_CHECK(recv(u->server, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN, "%s: extra datagram", fam);
    /* Still connected: a send without an address reaches the server. */
    ZDTM_CHECK(send(u->client, "again", 5, 0) == 5, "%s: send after restore: %s", fam, strerror(errno));
    struct pollfd p = {.fd = u->server, .events = POLLIN};
    ZDTM_CHECK(poll(&p, 1, 2000) == 1 && recv(u->server, buf, sizeof(buf), 0) == 5, "%s: no datagram", fam);
}

static void check_listener(int fd, int family, unsigned port) {
    const char *fam = family == AF_INET ? "tcp4" : "tcp6";
    ZDTM_CHECK(port_of(fd) == port, "%s: listener port %u, want %u", fam, port_of(fd), port);
    struct sockaddr_storage ss;
    socklen_t len = loopback(family, &ss, port);
    int c = socket(family, SOCK_STREAM, 0);
    ZDTM_CHECK(connect(c, (struct sockaddr *)&ss, len) == 0, "%s: connect: %s", fam, strerror(errno));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ZDTM_CHECK(poll(&p, 1, 2000) == 1, "%s: no connection to accept", fam);
    int a = accept(fd, NULL, NULL);
    ZDTM_CHECK(a >= 0, "%s: accept: %s", fam, strerror(errno));
    ZDTM_CHECK(write(c, "hi", 2) == 2, "write");
    char buf[2];
    ZDTM_CHECK(read(a, buf, 2) == 2 && memcmp(buf, "hi", 2) == 0, "%s: accepted connection", fam);
    close(a);
    close(c);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    struct sockaddr_storage ss;
    int one = 1;

    int l4 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(l4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len = loopback(AF_INET, &ss, 0);
    ZDTM_CHECK(bind(l4, (struct sockaddr *)&ss, len) == 0 && listen(l4, 5) == 0, "tcp4 listener");
    unsigned p4 = port_of(l4);

    int l6 = socket(AF_INET6, SOCK_STREAM, 0);
    setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(l6, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(l6, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    len = loopback(AF_INET6, &ss, 0);
    ZDTM_CHECK(bind(l6, (struct sockaddr *)&ss, len) == 0 && listen(l6, 9) == 0, "tcp6 listener: %s", strerror(errno));
    unsigned p6 = port_of(l6);

    struct udp_pair u4, u6;
    setup_udp(&u4, AF_INET);
    setup_udp(&u6, AF_INET6);

    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(fcntl(l4, F_GETFL) & O_NONBLOCK, "tcp4 listener lost O_NONBLOCK");
    ZDTM_CHECK(opt(l4, SOL_SOCKET, SO_REUSEADDR) == 1, "tcp4 listener lost SO_REUSEADDR");
    ZDTM_CHECK(opt(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "tcp6 listener lost IPV6_V6ONLY");
    ZDTM_CHECK(opt(l6, SOL_SOCKET, SO_KEEPALIVE) == 1, "tcp6 listener lost SO_KEEPALIVE");
    ZDTM_CHECK(opt(l6, IPPROTO_TCP, TCP_NODELAY) == 1, "tcp6 listener lost TCP_NODELAY");
    ZDTM_CHECK(opt(l6, SOL_SOCKET, SO_REUSEADDR) == 0, "tcp6 listener gained SO_REUSEADDR");
    check_listener(l4, AF_INET, p4);
    check_listener(l6, AF_INET6, p6);
    check_udp(&u4);
    check_udp(&u6);
    zdtm_pass();
}
