// Netlink sockets (NETLINK_ROUTE, NETLINK_SOCK_DIAG, NETLINK_KOBJECT_UEVENT, ...): protocol,
// type, the port id it is bound to, its multicast groups (NETLINK_LIST_MEMBERSHIPS, 4.2+), the
// peer it is connected to, the NETLINK_* options and buffer sizes, all read with getsockname,
// getpeername and getsockopt on the stolen copy (no code runs in the target).
// Restore binds the same port id (an auto-bound one too: the process may have remembered it),
// joins the same groups and connects to the same peer, in criu's network namespace.
// Messages queued for the process at dump time are not restored: netlink has no
// non-destructive way to read a queue whole. The dump logs it; replies to requests sent before
// the dump never arrive, as after a lost message.
#include <fcntl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace criu {
namespace {

// The groups bitmap of NETLINK_LIST_MEMBERSHIPS: a generic netlink family may have groups
// numbered in the thousands; 64 KiB of bitmap covers every group id the kernel hands out.
constexpr size_t kMaxGroupWords = 16384;
constexpr uint32_t kMaxGroupId = kMaxGroupWords * 32;

struct BoolOption {
    int opt;
    bool (images::NetlinkSocket::*get)() const;
    void (images::NetlinkSocket::*set)(bool);
    const char* name;
};

constexpr BoolOption kBoolOptions[] = {
    {NETLINK_PKTINFO, &images::NetlinkSocket::pktinfo, &images::NetlinkSocket::set_pktinfo, "NETLINK_PKTINFO"},
    {NETLINK_BROADCAST_ERROR, &images::NetlinkSocket::broadcast_error, &images::NetlinkSocket::set_broadcast_error,
     "NETLINK_BROADCAST_ERROR"},
    {NETLINK_NO_ENOBUFS, &images::NetlinkSocket::no_enobufs, &images::NetlinkSocket::set_no_enobufs,
     "NETLINK_NO_ENOBUFS"},
    {NETLINK_LISTEN_ALL_NSID, &images::NetlinkSocket::listen_all_nsid, &images::NetlinkSocket::set_listen_all_nsid,
     "NETLINK_LISTEN_ALL_NSID"},
    {NETLINK_CAP_ACK, &images::NetlinkSocket::cap_ack, &images::NetlinkSocket::set_cap_ack, "NETLINK_CAP_ACK"},
    {NETLINK_EXT_ACK, &images::NetlinkSocket::ext_ack, &images::NetlinkSocket::set_ext_ack, "NETLINK_EXT_ACK"},
    {NETLINK_GET_STRICT_CHK, &images::NetlinkSocket::strict_chk, &images::NetlinkSocket::set_strict_chk,
     "NETLINK_GET_STRICT_CHK"},
};

int sock_int(int fd, int level, int opt) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, opt, &v, &len) != 0)
        return -1;
    return v;
}

bool is_netlink(const FdView& v) { return S_ISSOCK(v.st.st_mode) && sock_int(v.stolen.get(), SOL_SOCKET, SO_DOMAIN) == AF_NETLINK; }

Status dump_netlink(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    int fd = v.stolen.get();
    auto* n = out.mutable_netlink();
    n->set_flags(description_flags(v));
    int proto = sock_int(fd, SOL_SOCKET, SO_PROTOCOL), type = sock_int(fd, SOL_SOCKET, SO_TYPE);
    if (proto < 0 || type < 0)
        return fail_errno("{}: SO_PROTOCOL/SO_TYPE", v.where());
    n->set_protocol(uint32_t(proto));
    n->set_type(uint32_t(type));

    sockaddr_nl self{}, peer{};
    socklen_t len = sizeof self;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) != 0)
        return fail_errno("{}: getsockname", v.where());
    n->set_port_id(self.nl_pid);
    len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0)
        return fail_errno("{}: getpeername", v.where());
    n->set_dst_port_id(peer.nl_pid);
    n->set_dst_group(peer.nl_groups);

    // Every group, not only the first 32 of nl_groups. optlen comes back as the size needed.
    std::vector<uint32_t> words(64);
    for (;;) {
        socklen_t glen = socklen_t(words.size() * 4);
        if (getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.data(), &glen) != 0)
            return fail_errno("{}: NETLINK_LIST_MEMBERSHIPS", v.where());
        if (glen <= words.size() * 4) {
            words.resize(glen / 4);
            break;
        }
        if (glen / 4 > kMaxGroupWords)
            return failf(E2BIG, "{}: membership bitmap of {} bytes", v.where(), glen);
        words.resize(glen / 4);
    }
    for (size_t w = 0; w < words.size(); ++w)
        for (uint32_t b = 0; b < 32; ++b)
            if (words[w] & (1u << b))
                n->add_groups(uint32_t(w * 32 + b + 1));

    for (const auto& o : kBoolOptions) {
        int val = sock_int(fd, SOL_NETLINK, o.opt);
        if (val < 0)
            return fail_errno("{}: getsockopt {}", v.where(), o.name);
        (n->*o.set)(val != 0);
    }
    n->set_rcvbuf(uint32_t(sock_int(fd, SOL_SOCKET, SO_RCVBUF)));
    n->set_sndbuf(uint32_t(sock_int(fd, SOL_SOCKET, SO_SNDBUF)));

    // A peek of one byte says whether anything is queued, without taking it.
    char byte;
    if (recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) > 0) {
        n->set_dropped_queue(true);
        c.log.warn("files", "{}: netlink socket (protocol {}) has messages queued; they are dropped by the dump",
                   v.where(), proto);
    }
    return {};
}

Status validate_netlink(const images::FileEntry& e) {
    if (!e.has_netlink())
        return fail(EINVAL, "netlink entry without NetlinkSocket data");
    const auto& n = e.netlink();
    if (n.protocol() >= MAX_LINKS)
        return failf(EINVAL, "netlink protocol {} is not below {}", n.protocol(), MAX_LINKS);
    if (n.type() != SOCK_RAW && n.type() != SOCK_DGRAM)
        return failf(EINVAL, "netlink socket type {} is neither SOCK_RAW nor SOCK_DGRAM", n.type());
    if (n.flags() & ~uint32_t(O_ACCMODE | O_NONBLOCK | O_ASYNC | kKernelOLargefile))
        return failf(EINVAL, "netlink socket flags 0{:o} have unknown bits", n.flags());
    if (n.groups_size() > int(kMaxGroupId))
        return failf(EINVAL, "netlink socket in {} groups", n.groups_size());
    for (uint32_t g : n.groups())
        if (g == 0 || g > kMaxGroupId)
            return failf(EINVAL, "netlink group {} is out of range 1-{}", g, kMaxGroupId);
    return {};
}

Expected<UniqueFd> open_netlink(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& n = e.netlink();
    std::string what = fmt::format("netlink socket (protocol {}, port id {})", n.protocol(), n.port_id());
    UniqueFd fd(socket(AF_NETLINK, int(n.type()) | SOCK_CLOEXEC, int(n.protocol())));
    if (!fd)
        return fail_errno("{}: socket", what);
    for (const auto& o : kBoolOptions) {
        if (!(n.*o.get)())
            continue;
        int one = 1;
        if (setsockopt(fd.get(), SOL_NETLINK, o.opt, &one, sizeof one) != 0)
            return fail_errno("{}: setsockopt {}", what, o.name);
    }
    // Only sizes the process changed: setting one locks it (SOCK_RCVBUF_LOCK). FORCE because
    // the dumped size may be above net.core.rmem_max (root set it so).
    for (auto [opt, force, want] : {std::tuple{SO_RCVBUF, SO_RCVBUFFORCE, n.rcvbuf()},
                                    std::tuple{SO_SNDBUF, SO_SNDBUFFORCE, n.sndbuf()}}) {
        int now = sock_int(fd.get(), SOL_SOCKET, opt);
        int half = int(want / 2);  // getsockopt reports twice what was set (socket(7))
        if (want != 0 && now != int(want) && setsockopt(fd.get(), SOL_SOCKET, force, &half, sizeof half) != 0)
            return fail_errno("{}: setting buffer size {}", what, want);
    }
    if (n.port_id() != 0) {
        sockaddr_nl a{};
        a.nl_family = AF_NETLINK;
        a.nl_pid = n.port_id();
        if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            if (errno == EADDRINUSE)
                return failf(EADDRINUSE, "{}: the port id is taken by another netlink socket", what);
            return fail_errno("{}: bind", what);
        }
    }
    for (uint32_t g : n.groups()) {
        if (setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) != 0)
            return fail_errno("{}: joining group {}", what, g);
    }
    if (n.dst_port_id() != 0 || n.dst_group() != 0) {
        sockaddr_nl a{};
        a.nl_family = AF_NETLINK;
        a.nl_pid = n.dst_port_id();
        a.nl_groups = n.dst_group();
        if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            return fail_errno("{}: connect to port id {} group {:#x}", what, n.dst_port_id(), n.dst_group());
    }
    TRY_VOID_CTX(set_status_flags(fd.get(), n.flags()), "{}", what);
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kNetlinkKind{
    .name = "netlink socket",
    .kind = images::FD_NETLINK_SK,
    .match = is_netlink,
    .dump = dump_netlink,
    .validate = validate_netlink,
    .open = open_netlink,
};

}  // namespace criu
