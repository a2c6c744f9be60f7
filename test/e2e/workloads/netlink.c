/*
 * Netlink sockets: a NETLINK_ROUTE socket (auto-bound port id, joined to RTNLGRP_LINK, with
 * NETLINK_EXT_ACK), a second one bound to a chosen port id, and a NETLINK_SOCK_DIAG socket.
 * After restore the port ids, group and option are the same and each socket answers a
 * request: RTM_GETLINK lists "lo", SOCK_DIAG_BY_FAMILY gets a reply with our sequence number.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static unsigned port_of(int fd) {
    struct sockaddr_nl a;
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    return a.nl_pid;
}

static int recv_wait(int fd, char *buf, size_t n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 3000) != 1)
        return -1;
    return (int)recv(fd, buf, n, 0);
}

/* RTM_GETLINK dump: 1 if "lo" is among the answers. */
static int route_sees_lo(int fd, unsigned seq) {
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {.h = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                   .nlmsg_seq = seq},
             .i = {.ifi_family = AF_UNSPEC}};
    ZDTM_CHECK(send(fd, &req, sizeof(req), 0) == (ssize_t)sizeof(req), "send RTM_GETLINK: %s", strerror(errno));
    static char buf[65536] __attribute__((aligned(4)));
    int lo = 0;
    for (;;) {
        int n = recv_wait(fd, buf, sizeof(buf));
        ZDTM_CHECK(n > 0, "no answer to RTM_GETLINK: %s", strerror(errno));
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != seq)
                continue; /* a multicast notification of the joined group */
            if (h->nlmsg_type == NLMSG_DONE)
                return lo;
            ZDTM_CHECK(h->nlmsg_type != NLMSG_ERROR, "RTM_GETLINK failed");
            struct ifinfomsg *ifi = NLMSG_DATA(h);
            int len = (int)IFLA_PAYLOAD(h);
            for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == IFLA_IFNAME && strcmp(RTA_DATA(a), "lo") == 0)
                    lo = 1;
        }
    }
}

/* Any reply (a dump or an error: unix_diag may be a module that is not there) with our seq. */
static int diag_answers(int fd, unsigned seq) {
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req = {.h = {.nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                   .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = seq},
             .r = {.sdiag_family = AF_UNIX, .udiag_states = ~0u}};
    ZDTM_CHECK(send(fd, &req, sizeof(req), 0) == (ssize_t)sizeof(req), "send SOCK_DIAG: %s", strerror(errno));
    static char buf[65536] __attribute__((aligned(4)));
    for (;;) {
        int n = recv_wait(fd, buf, sizeof(buf));
        if (n <= 0)
            return 0;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n))
            if (h->nlmsg_seq == seq && (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR))
                return 1;
    }
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    int rt = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    ZDTM_CHECK(rt >= 0, "socket: %s", strerror(errno));
    struct sockaddr_nl a = {.nl_family = AF_NETLINK};
    ZDTM_CHECK(bind(rt, (struct sockaddr *)&a, sizeof(a)) == 0, "autobind: %s", strerror(errno));
    unsigned grp = RTNLGRP_LINK, one = 1;
    ZDTM_CHECK(setsockopt(rt, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof(grp)) == 0, "join");
    ZDTM_CHECK(setsockopt(rt, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)) == 0, "EXT_ACK");
    unsigned rt_port = port_of(rt);
    ZDTM_CHECK(rt_port != 0 && route_sees_lo(rt, 1), "RTM_GETLINK before the dump");

    int fixed = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK, NETLINK_ROUTE);
    struct sockaddr_nl b = {.nl_family = AF_NETLINK, .nl_pid = 0x7f000000u | (unsigned)getpid()};
    ZDTM_CHECK(fixed >= 0 && bind(fixed, (struct sockaddr *)&b, sizeof(b)) == 0, "bind fixed: %s", strerror(errno));
    int diag = socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG);
    ZDTM_CHECK(diag >= 0, "sock_diag socket: %s", strerror(errno));

    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(port_of(rt) == rt_port, "port id %u, was %u", port_of(rt), rt_port);
    ZDTM_CHECK(port_of(fixed) == b.nl_pid, "fixed port id %u, was %u", port_of(fixed), b.nl_pid);
    unsigned groups[4] = {0};
    socklen_t glen = sizeof(groups);
    ZDTM_CHECK(getsockopt(rt, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &glen) == 0 &&
                   (groups[0] & (1u << (RTNLGRP_LINK - 1))),
               "group RTNLGRP_LINK lost (%#x)", groups[0]);
    int v = 0;
    socklen_t vlen = sizeof(v);
    ZDTM_CHECK(getsockopt(rt, SOL_NETLINK, NETLINK_EXT_ACK, &v, &vlen) == 0 && v == 1, "EXT_ACK lost");
    int type = 0;
    socklen_t tlen = sizeof(type);
    ZDTM_CHECK(getsockopt(fixed, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_DGRAM, "type %d", type);
    ZDTM_CHECK(route_sees_lo(rt, 2), "RTM_GETLINK after restore did not list lo");
    ZDTM_CHECK(route_sees_lo(fixed, 3), "RTM_GETLINK on the fixed-port socket");
    ZDTM_CHECK(diag_answers(diag, 4), "no SOCK_DIAG answer");
    zdtm_pass();
}
