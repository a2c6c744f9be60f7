/*
 * A byte stream both ways over one TCP connection, for the --tcp-established tests
 * (workloads/tcp_stream.c inside the dumped tree, workloads/tcp_peer.c outside it).
 *
 * Each side writes zdtm_pattern(seed, offset) as fast as the connection takes it and reads at a
 * limited rate, so both ends always have data queued: unread in the receiver's queue, not
 * acknowledged or not sent yet in the sender's. Every byte read is checked against the
 * pattern at its offset, so one byte lost or duplicated anywhere is found at once.
 */
#ifndef TCP_STREAM_H
#define TCP_STREAM_H

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define TCP_STREAM_CHUNK 65536
#define TCP_STREAM_READ_RATE (3u << 20) /* bytes per second */
#define TCP_STREAM_BURST (256u << 10)

struct tcp_stream {
    int fd;
    uint32_t tx_seed, rx_seed;
    uint64_t tx, rx;           /* bytes written; bytes read and checked */
    double allowance;          /* bytes that may be read now */
    struct timespec last;
    char err[256];             /* the first problem; the stream stops there */
    unsigned char buf[TCP_STREAM_CHUNK];
};

static inline double tcp_stream_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void tcp_stream_init(struct tcp_stream *s, int fd, uint32_t tx_seed, uint32_t rx_seed) {
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->tx_seed = tx_seed;
    s->rx_seed = rx_seed;
    clock_gettime(CLOCK_MONOTONIC, &s->last);
}

/* One round: wait up to 10 ms, write what the socket takes, read what the rate allows.
 * Returns 0, or -1 once s->err is set. */
static inline int tcp_stream_step(struct tcp_stream *s) {
    if (s->err[0])
        return -1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - s->last.tv_sec) + (double)(now.tv_nsec - s->last.tv_nsec) / 1e9;
    s->last = now;
    s->allowance += dt * TCP_STREAM_READ_RATE;
    if (s->allowance > TCP_STREAM_BURST)
        s->allowance = TCP_STREAM_BURST;
    struct pollfd p = {s->fd, POLLOUT | (s->allowance >= 1 ? POLLIN : 0), 0};
    int n = poll(&p, 1, 10);
    if (n < 0 && errno != EINTR) {
        snprintf(s->err, sizeof s->err, "poll: %s", strerror(errno));
        return -1;
    }
    if (n <= 0)
        return 0;
    if (p.revents & POLLOUT) {
        for (size_t i = 0; i < TCP_STREAM_CHUNK; i++)
            s->buf[i] = zdtm_pattern(s->tx_seed, s->tx + i);
        ssize_t w = send(s->fd, s->buf, TCP_STREAM_CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            s->tx += (uint64_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(s->err, sizeof s->err, "send after %llu bytes: %s", (unsigned long long)s->tx, strerror(errno));
            return -1;
        }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        size_t want = (size_t)s->allowance;
        if (want > TCP_STREAM_CHUNK)
            want = TCP_STREAM_CHUNK;
        if (want == 0)
            want = 1;
        ssize_t r = recv(s->fd, s->buf, want, MSG_DONTWAIT);
        if (r == 0) {
            snprintf(s->err, sizeof s->err, "end of stream after %llu bytes", (unsigned long long)s->rx);
            return -1;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(s->err, sizeof s->err, "recv after %llu bytes: %s", (unsigned long long)s->rx, strerror(errno));
            return -1;
        }
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                if (s->buf[i] != zdtm_pattern(s->rx_seed, s->rx + (uint64_t)i)) {
                    snprintf(s->err, sizeof s->err, "byte %llu of the stream is wrong (lost or duplicated data)",
                             (unsigned long long)(s->rx + (uint64_t)i));
                    return -1;
                }
            s->rx += (uint64_t)r;
            s->allowance -= (double)r;
        }
    }
    return 0;
}

/* "127.0.0.1" / "::1" and a port to a socket address. */
static inline int tcp_stream_addr(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len) {
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

#endif
