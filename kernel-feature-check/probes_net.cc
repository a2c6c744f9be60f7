// Probes for socket dumping: TCP repair mode and the sock_diag families.
// Each probe makes its own sockets on loopback and closes them before returning.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <linux/packet_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <vector>

#include "kernel-feature-check/probe_util.h"

namespace criu::kfc {

namespace {

struct TcpPair {
    UniqueFd listener;
    UniqueFd client;
    UniqueFd server;
};

// An established TCP connection over 127.0.0.1, both ends in this process.
Expected<TcpPair> tcp_loopback_pair() {
    TcpPair p;
    p.listener.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!p.listener)
        return fail_errno("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(p.listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(p.listener.get(), 1) < 0 ||
        getsockname(p.listener.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
        return fail_errno("listen on 127.0.0.1");
    p.client.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!p.client)
        return fail_errno("socket");
    if (connect(p.client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        return fail_errno("connect to 127.0.0.1 (is lo up?)");
    p.server.reset(accept4(p.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!p.server)
        return fail_errno("accept");
    return p;
}

Status set_repair(int fd, int on) {
    if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &on, sizeof on) < 0)
        return fail_errno("setsockopt TCP_REPAIR={}", on);
    return {};
}

ProbeResult probe_tcp_repair() {
    auto p = tcp_loopback_pair();
    if (!p)
        return no(p.error().str());
    if (auto st = set_repair(p->client.get(), TCP_REPAIR_ON); !st)
        return no(st.error().str());
    int q = TCP_SEND_QUEUE;
    uint32_t seq = 0;
    socklen_t len = sizeof seq;
    if (setsockopt(p->client.get(), SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof q) < 0 ||
        getsockopt(p->client.get(), SOL_TCP, TCP_QUEUE_SEQ, &seq, &len) < 0)
        return no_errno("TCP_REPAIR_QUEUE / TCP_QUEUE_SEQ");
    if (auto st = set_repair(p->client.get(), TCP_REPAIR_OFF); !st)
        return no(st.error().str());
    return yes(fmt::format("repair mode on an established socket, send queue seq {} read", seq));
}

// Same layout as the kernel's struct tcp_repair_window (4.8+).
struct RepairWindow {
    uint32_t snd_wl1;
    uint32_t snd_wnd;
    uint32_t max_window;
    uint32_t rcv_wnd;
    uint32_t rcv_wup;
};

ProbeResult probe_tcp_repair_window() {
    auto p = tcp_loopback_pair();
    if (!p)
        return no(p.error().str());
    if (auto st = set_repair(p->client.get(), TCP_REPAIR_ON); !st)
        return no(st.error().str());
    RepairWindow w{};
    socklen_t len = sizeof w;
    if (getsockopt(p->client.get(), SOL_TCP, TCP_REPAIR_WINDOW, &w, &len) < 0)
        return no_errno("getsockopt TCP_REPAIR_WINDOW");
    if (len != sizeof w)
        return no(fmt::format("TCP_REPAIR_WINDOW returned {} bytes, expected {}", len, sizeof w));
    if (setsockopt(p->client.get(), SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) < 0)
        return no_errno("setsockopt TCP_REPAIR_WINDOW (same values)");
    if (auto st = set_repair(p->client.get(), TCP_REPAIR_OFF); !st)
        return no(st.error().str());
    return yes(fmt::format("window read and written back (snd_wnd {} rcv_wnd {})", w.snd_wnd, w.rcv_wnd));
}

struct DiagOutcome {
    int messages = 0;
    bool matched = false;
};

// Sends one SOCK_DIAG_BY_FAMILY dump request and walks the replies. An NLMSG_ERROR
// reply (e.g. ENOENT when the family's diag module is missing) is the answer "no".
Expected<DiagOutcome> diag_dump(const void* req, size_t req_len,
                                const std::function<bool(const nlmsghdr*)>& match) {
    UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!fd)
        return fail_errno("socket(NETLINK_SOCK_DIAG)");
    timeval tv{0, 500'000};  // the kernel answers at once; never hang on a broken one
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    std::vector<char> msg(NLMSG_SPACE(req_len));
    auto* nlh = reinterpret_cast<nlmsghdr*>(msg.data());
    nlh->nlmsg_len = NLMSG_LENGTH(req_len);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = 1;
    memcpy(NLMSG_DATA(nlh), req, req_len);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd.get(), msg.data(), nlh->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return fail_errno("send SOCK_DIAG_BY_FAMILY");

    DiagOutcome out;
    std::vector<char> buf(32768);
    for (;;) {
        ssize_t n = recv(fd.get(), buf.data(), buf.size(), 0);
        if (n < 0)
            return fail_errno("recv sock_diag reply");
        if (n == 0)
            return fail(EPROTO, "sock_diag socket closed mid-dump");
        int left = int(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return out;
            if (h->nlmsg_type == NLMSG_ERROR) {
                auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
                return fail(-e->error, "sock_diag replied with an error");
            }
            out.messages++;
            if (match(h))
                out.matched = true;
        }
    }
}

uint64_t inode_of(int fd) {
    struct stat st {};
    fstat(fd, &st);
    return st.st_ino;
}

ProbeResult diag_result(const Expected<DiagOutcome>& r, std::string_view what) {
    if (!r)
        return no(r.error().str());
    if (!r->matched)
        return no(fmt::format("{} socket(s) listed but not the probe's {}", r->messages, what));
    return yes(fmt::format("{} socket(s) listed, the probe's {} among them", r->messages, what));
}

ProbeResult probe_diag_unix() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return no_errno("socketpair");
    UniqueFd a(sv[0]), b(sv[1]);
    uint64_t ino = inode_of(a.get()), peer = inode_of(b.get());
    unix_diag_req req{};
    req.sdiag_family = AF_UNIX;
    req.udiag_states = ~0u;
    req.udiag_show = UDIAG_SHOW_PEER;
    bool peer_ok = false;
    auto r = diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
        auto* m = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
        if (m->udiag_ino != ino)
            return false;
        // The peer attribute is what pairs socketpair ends and connections at dump time.
        int len = int(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
        for (auto* a = reinterpret_cast<const rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
            if (a->rta_type == UNIX_DIAG_PEER && *static_cast<const uint32_t*>(RTA_DATA(a)) == peer)
                peer_ok = true;
        return true;
    });
    if (r && r->matched && !peer_ok)
        return no("the probe's socketpair was listed without its peer inode");
    return diag_result(r, "socketpair (with peer)");
}

ProbeResult probe_diag_inet() {
    // TCP and UDP have separate diag handlers (inet_diag, udp_diag); ask both.
    std::string detail;
    for (int proto : {IPPROTO_TCP, IPPROTO_UDP}) {
        UniqueFd s(socket(AF_INET, (proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
        if (!s)
            return no_errno("socket");
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
            return no_errno("bind 127.0.0.1");
        if (proto == IPPROTO_TCP && listen(s.get(), 1) < 0)
            return no_errno("listen");
        uint64_t ino = inode_of(s.get());
        inet_diag_req_v2 req{};
        req.sdiag_family = AF_INET;
        req.sdiag_protocol = uint8_t(proto);
        req.idiag_states = ~0u;
        auto r = diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
            return static_cast<const inet_diag_msg*>(NLMSG_DATA(h))->idiag_inode == ino;
        });
        const char* name = proto == IPPROTO_TCP ? "TCP listener" : "UDP socket";
        ProbeResult one = diag_result(r, name);
        if (!one.present)
            return one;
        detail += (detail.empty() ? "" : "; ") + one.detail;
    }
    return yes(detail);
}

ProbeResult probe_diag_packet() {
    // Protocol 0: the socket exists (and is listed) but receives nothing.
    UniqueFd s(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!s)
        return no_errno("socket(AF_PACKET)");
    uint64_t ino = inode_of(s.get());
    packet_diag_req req{};
    req.sdiag_family = AF_PACKET;
    req.pdiag_show = PACKET_SHOW_INFO;
    auto r = diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
        return static_cast<const packet_diag_msg*>(NLMSG_DATA(h))->pdiag_ino == ino;
    });
    return diag_result(r, "packet socket");
}

ProbeResult probe_diag_netlink() {
    // Only bound netlink sockets are in the table netlink_diag walks; bind with
    // nl_pid 0 so the kernel picks a port id.
    UniqueFd s(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!s)
        return no_errno("socket(NETLINK_ROUTE)");
    sockaddr_nl a{};
    a.nl_family = AF_NETLINK;
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        return no_errno("bind netlink");
    uint64_t ino = inode_of(s.get());
    netlink_diag_req req{};
    req.sdiag_family = AF_NETLINK;
    req.sdiag_protocol = NDIAG_PROTO_ALL;
    req.ndiag_show = NDIAG_SHOW_GROUPS;
    auto r = diag_dump(&req, sizeof req, [&](const nlmsghdr* h) {
        return static_cast<const netlink_diag_msg*>(NLMSG_DATA(h))->ndiag_ino == ino;
    });
    return diag_result(r, "rtnetlink socket");
}

const Probe kProbes[] = {
    {"sock_diag_unix", Category::Required, "finding unix socket peers, names and queues (NETLINK_SOCK_DIAG)",
     "none: unix sockets, which nearly every process has, could not be paired", probe_diag_unix},
    {"sock_diag_inet", Category::SomeStates, "dumping TCP and UDP sockets (addresses, state)",
     "refuse trees holding inet sockets", probe_diag_inet},
    {"sock_diag_packet", Category::SomeStates, "dumping AF_PACKET sockets", "refuse trees holding packet sockets",
     probe_diag_packet},
    {"sock_diag_netlink", Category::SomeStates, "dumping netlink sockets", "refuse trees holding bound netlink sockets",
     probe_diag_netlink},
    {"tcp_repair", Category::SomeStates, "dumping and restoring established TCP connections",
     "refuse established TCP, or close them (--tcp-close)", probe_tcp_repair},
    {"tcp_repair_window", Category::SomeStates, "restoring TCP window state exactly (no stall after restore)",
     "restore without window state; the peer may stall until it probes", probe_tcp_repair_window},
};

}  // namespace

std::span<const Probe> net_probes() { return kProbes; }

}  // namespace criu::kfc
