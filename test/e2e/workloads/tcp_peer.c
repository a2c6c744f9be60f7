/*
 * The peer OUTSIDE the dumped tree for the --tcp-established tests (test/e2e/tcp_run.py): the
 * other end of tcp_stream.c's connection, never dumped. It streams and checks like the
 * workload (lib/tcp_stream.h, seeds swapped) and keeps going while the workload is frozen, gone
 * and restored: a reset or an end of stream at any time is a failure.
 *
 *   e2e_tcp_peer STATUS listen ADDR       prints "PORT n", accepts one connection
 *   e2e_tcp_peer STATUS connect ADDR PORT
 *
 * Prints "CONNECTED" once connected. Every 20 ms it rewrites the file STATUS with one line
 * "rx R acked A tx T ok|err": bytes read and checked, bytes of its own the workload's kernel
 * acknowledged (sent minus SIOCOUTQ), bytes sent. On SIGTERM it prints "PEER PASS ..." or
 * "PEER FAIL: why" and then waits for SIGKILL without closing the connection (a close would
 * reset the workload before it has given its own verdict).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "tcp_stream.h"

static volatile sig_atomic_t stop;
static struct tcp_stream st;

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

static void write_status(const char *path) {
    int outq = 0;
    ioctl(st.fd, SIOCOUTQ, &outq);
    char line[200];
    int n = snprintf(line, sizeof line, "rx %llu acked %llu tx %llu %s\n", (unsigned long long)st.rx,
                     (unsigned long long)(st.tx - (uint64_t)outq), (unsigned long long)st.tx, st.err[0] ? "err" : "ok");
    /* Written whole to a new file and renamed: a reader never sees half a line. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) == n)
        rename(tmp, path);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s STATUS listen ADDR | STATUS connect ADDR PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    const char *status = argv[1];
    int listening = strcmp(argv[2], "listen") == 0;
    struct sockaddr_storage ss;
    socklen_t len;
    if (tcp_stream_addr(argv[3], listening ? "0" : (argc > 4 ? argv[4] : ""), &ss, &len) != 0) {
        printf("PEER FAIL: bad address %s\n", argv[3]);
        return 1;
    }
    int fd;
    if (listening) {
        int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) != 0 || listen(lfd, 1) != 0 ||
            getsockname(lfd, (struct sockaddr *)&ss, &len) != 0) {
            printf("PEER FAIL: listen on %s: %s\n", argv[3], strerror(errno));
            return 1;
        }
        int port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
        printf("PORT %d\n", port);
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 60000) != 1) {
            printf("PEER FAIL: no connection within 60 s\n");
            return 1;
        }
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        close(lfd);
    } else {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        printf("PEER FAIL: no connection: %s\n", strerror(errno));
        return 1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    tcp_stream_init(&st, fd, 2, 1);
    printf("CONNECTED\n");
    double next_status = 0;
    while (!stop) {
        if (tcp_stream_step(&st) != 0) {
            /* Keep reporting until told to stop; the runner reads the error from the status. */
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        double now = tcp_stream_now();
        if (now >= next_status) {
            write_status(status);
            next_status = now + 0.02;
        }
    }
    write_status(status);
    if (st.err[0])
        printf("PEER FAIL: %s (rx %llu tx %llu)\n", st.err, (unsigned long long)st.rx, (unsigned long long)st.tx);
    else
        printf("PEER PASS rx %llu tx %llu\n", (unsigned long long)st.rx, (unsigned long long)st.tx);
    sigset_t none;
    sigemptyset(&none);
    for (;;)
        sigsuspend(&none);
}
