/*
 * Unix sockets split between processes: a stream socketpair and a datagram socketpair whose
 * ends live in a parent and its child, with data queued in both directions at the dump. After
 * restore each side reads exactly what the other sent before, then they talk once more.
 * The parent prints PASS only if the child's checks held too.
 *
 * Names across the two: the parent's listener at a path accepted a connection from the child's
 * client bound to an abstract name, and the child sent a datagram from a socket bound to a path
 * to the parent's bound datagram socket. After restore getsockname()/getpeername() on both ends
 * and recvfrom() show the same names as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static int expect(int fd, const char *want) {
    char buf[64];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1)
        return 0;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

static socklen_t addr_of(struct sockaddr_un *a, const char *name, int abstract) {
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 0));
}

/* The name in an address as "@abstract" or "path" ("" when unnamed). */
static const char *shown(const struct sockaddr_un *a, socklen_t len, char *out, size_t size) {
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n == 0)
        snprintf(out, size, "%s", "");
    else if (a->sun_path[0] == 0)
        snprintf(out, size, "@%.*s", (int)n - 1, a->sun_path + 1);
    else
        snprintf(out, size, "%.*s", (int)strnlen(a->sun_path, n), a->sun_path);
    return out;
}

/* getsockname (peer 0) or getpeername (peer 1) of fd, shown as above. */
static const char *name_of(int fd, int peer, char *out, size_t size) {
    struct sockaddr_un a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    if ((peer ? getpeername(fd, (struct sockaddr *)&a, &len) : getsockname(fd, (struct sockaddr *)&a, &len)) != 0)
        snprintf(out, size, "(error %s)", strerror(errno));
    else
        shown(&a, len, out, size);
    return out;
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
    unlink("tree.sock");
    unlink("tree_dg.sock");
    unlink("child_dg.sock");
    struct sockaddr_un la, da, ca, sa;
    socklen_t lalen = addr_of(&la, "tree.sock", 0), dalen = addr_of(&da, "tree_dg.sock", 0);
    socklen_t salen = addr_of(&sa, "child_dg.sock", 0);
    char cli_name[64], want_cli[80], buf[128];
    snprintf(cli_name, sizeof(cli_name), "criu-e2e-tree-cli-%d", getpid());
    snprintf(want_cli, sizeof(want_cli), "@%s", cli_name);
    socklen_t calen = addr_of(&ca, cli_name, 1);
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    ZDTM_CHECK(bind(lst, (struct sockaddr *)&la, lalen) == 0 && listen(lst, 4) == 0, "listen tree.sock: %s",
               strerror(errno));
    int pdg = socket(AF_UNIX, SOCK_DGRAM, 0);
    ZDTM_CHECK(bind(pdg, (struct sockaddr *)&da, dalen) == 0, "bind tree_dg.sock: %s", strerror(errno));
    pid_t c = fork();
    ZDTM_CHECK(c >= 0, "fork");
    if (c == 0) {
        close(st[0]);
        close(dg[0]);
        send(st[1], "child stream", 12, 0);
        send(dg[1], "child dgram", 11, 0);
        int cli = socket(AF_UNIX, SOCK_STREAM, 0);
        int cdg = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (bind(cli, (struct sockaddr *)&ca, calen) != 0 || connect(cli, (struct sockaddr *)&la, lalen) != 0 ||
            bind(cdg, (struct sockaddr *)&sa, salen) != 0 ||
            sendto(cdg, "named dgram", 11, 0, (struct sockaddr *)&da, dalen) != 11)
            _exit(2);
        zdtm_wait();
        int ok = expect(st[1], "parent stream") && expect(dg[1], "parent dgram");
        if (strcmp(name_of(cli, 0, buf, sizeof(buf)), want_cli) != 0) {
            zdtm_msg("child: client name '%s', want '%s'", buf, want_cli);
            ok = 0;
        }
        if (strcmp(name_of(cli, 1, buf, sizeof(buf)), "tree.sock") != 0) {
            zdtm_msg("child: client's peer name '%s', want 'tree.sock'", buf);
            ok = 0;
        }
        ok = ok && expect(cli, "accepted says hi") && send(cli, "client answers", 14, 0) == 14;
        ok = ok && send(st[1], "bye", 3, 0) == 3;
        _exit(ok ? 0 : 1);
    }
    close(st[1]);
    close(dg[1]);
    int acc = accept(lst, NULL, NULL);
    ZDTM_CHECK(acc >= 0, "accept the child's connection: %s", strerror(errno));
    wait_queued(pdg);
    ZDTM_CHECK(send(st[0], "parent stream", 13, 0) == 13, "send");
    ZDTM_CHECK(send(dg[0], "parent dgram", 12, 0) == 12, "send");
    wait_queued(st[0]);
    wait_queued(dg[0]);
    zdtm_ready();
    zdtm_wait();
    ZDTM_CHECK(expect(st[0], "child stream"), "stream data from the child");
    ZDTM_CHECK(expect(dg[0], "child dgram"), "datagram from the child");
    ZDTM_CHECK(strcmp(name_of(acc, 0, buf, sizeof(buf)), "tree.sock") == 0, "accepted end's name '%s', want tree.sock",
               buf);
    ZDTM_CHECK(strcmp(name_of(acc, 1, buf, sizeof(buf)), want_cli) == 0, "accepted end's peer '%s', want '%s'", buf,
               want_cli);
    ZDTM_CHECK(strcmp(name_of(lst, 0, buf, sizeof(buf)), "tree.sock") == 0, "listener's name '%s'", buf);
    struct sockaddr_un from;
    socklen_t flen = sizeof(from);
    memset(&from, 0, sizeof(from));
    char data[32], who[128];
    ssize_t n = recvfrom(pdg, data, sizeof(data), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
    ZDTM_CHECK(n == 11 && memcmp(data, "named dgram", 11) == 0, "the child's named datagram: %zd", n);
    ZDTM_CHECK(strcmp(shown(&from, flen, who, sizeof(who)), "child_dg.sock") == 0,
               "the child's datagram comes from '%s', want child_dg.sock", who);
    ZDTM_CHECK(send(acc, "accepted says hi", 16, 0) == 16, "send on the accepted end");
    kill(c, SIGTERM);
    int status = 0;
    ZDTM_CHECK(waitpid(c, &status, 0) == c, "waitpid: %s", strerror(errno));
    ZDTM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's checks failed (status %#x)", status);
    ZDTM_CHECK(expect(st[0], "bye"), "the child's last word");
    ZDTM_CHECK(expect(acc, "client answers"), "the child's client answers");
    zdtm_pass();
}
