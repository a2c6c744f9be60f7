#include "criu/files/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "criu/core/unique_fd.h"

namespace criu {
namespace {

template <class T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);  // netlink payloads are 4-byte aligned only
    return v;
}

Status parse_unix_attrs(std::span<const uint8_t> a, UnixDiag& d) {
    while (!a.empty()) {
        if (a.size() < sizeof(nlattr))
            return failf(EPROTO, "unix_diag of inode {}: {} stray bytes after the attributes", d.ino, a.size());
        auto at = load<nlattr>(a.data());
        if (at.nla_len < sizeof(nlattr) || at.nla_len > a.size())
            return failf(EPROTO, "unix_diag of inode {}: attribute {} has length {} ({} bytes left)", d.ino,
                         at.nla_type, at.nla_len, a.size());
        std::span<const uint8_t> v = a.subspan(NLA_HDRLEN, at.nla_len - NLA_HDRLEN);
        auto need = [&](size_t n, const char* what) -> Status {
            if (v.size() < n)
                return failf(EPROTO, "unix_diag of inode {}: {} attribute of {} bytes, expected {}", d.ino, what,
                             v.size(), n);
            return {};
        };
        switch (at.nla_type & NLA_TYPE_MASK) {
        case UNIX_DIAG_NAME:
            d.has_name = true;
            d.name.assign(reinterpret_cast<const char*>(v.data()), v.size());
            break;
        case UNIX_DIAG_VFS:
            TRY_VOID(need(sizeof(unix_diag_vfs), "VFS"));
            d.has_vfs = true;
            d.vfs_ino = load<unix_diag_vfs>(v.data()).udiag_vfs_ino;
            d.vfs_dev = load<unix_diag_vfs>(v.data()).udiag_vfs_dev;
            break;
        case UNIX_DIAG_PEER:
            TRY_VOID(need(4, "PEER"));
            d.peer = load<uint32_t>(v.data());
            break;
        case UNIX_DIAG_ICONS:
            if (v.size() % 4)
                return failf(EPROTO, "unix_diag of inode {}: ICONS attribute of {} bytes", d.ino, v.size());
            for (size_t i = 0; i < v.size(); i += 4)
                d.icons.push_back(load<uint32_t>(v.data() + i));
            break;
        case UNIX_DIAG_RQLEN:
            TRY_VOID(need(sizeof(unix_diag_rqlen), "RQLEN"));
            d.has_rqlen = true;
            d.rqueue = load<unix_diag_rqlen>(v.data()).udiag_rqueue;
            d.wqueue = load<unix_diag_rqlen>(v.data()).udiag_wqueue;
            break;
        case UNIX_DIAG_SHUTDOWN:
            TRY_VOID(need(1, "SHUTDOWN"));
            d.shutdown = v[0];
            break;
        default:
            break;  // MEMINFO, UID and attributes of newer kernels: not needed
        }
        size_t step = NLA_ALIGN(at.nla_len);
        a = a.subspan(std::min(step, a.size()));
    }
    return {};
}

}  // namespace

Status parse_unix_diag(std::span<const uint8_t> buf, std::vector<UnixDiag>& out, bool& done) {
    done = false;
    while (!buf.empty()) {
        if (buf.size() < sizeof(nlmsghdr))
            return failf(EPROTO, "sock_diag reply: {} stray bytes after the last message", buf.size());
        auto h = load<nlmsghdr>(buf.data());
        if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > buf.size())
            return failf(EPROTO, "sock_diag reply: message of length {} with {} bytes left", h.nlmsg_len, buf.size());
        std::span<const uint8_t> body = buf.subspan(NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN);
        if (h.nlmsg_type == NLMSG_DONE) {
            done = true;
            return {};
        }
        if (h.nlmsg_type == NLMSG_ERROR) {
            if (body.size() < sizeof(int))
                return fail(EPROTO, "sock_diag reply: truncated NLMSG_ERROR");
            int err = -load<int>(body.data());
            return fail(err > 0 ? err : EPROTO, "sock_diag of unix sockets refused by the kernel");
        }
        if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY)
            return failf(EPROTO, "sock_diag reply: unexpected message type {}", h.nlmsg_type);
        if (body.size() < sizeof(unix_diag_msg))
            return failf(EPROTO, "sock_diag reply: unix_diag_msg of {} bytes", body.size());
        auto m = load<unix_diag_msg>(body.data());
        if (m.udiag_family != AF_UNIX)
            return failf(EPROTO, "sock_diag reply: family {} in a unix socket dump", m.udiag_family);
        UnixDiag d;
        d.ino = m.udiag_ino;
        d.type = m.udiag_type;
        d.state = m.udiag_state;
        TRY_VOID(parse_unix_attrs(body.subspan(NLMSG_ALIGN(sizeof(unix_diag_msg))), d));
        out.push_back(std::move(d));
        buf = buf.subspan(std::min<size_t>(NLMSG_ALIGN(h.nlmsg_len), buf.size()));
    }
    return {};
}

Expected<std::map<uint32_t, UnixDiag>> collect_unix_diag() {
    UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl)
        return fail_errno("socket(NETLINK_SOCK_DIAG)");
    struct {
        nlmsghdr h;
        unix_diag_req r;
    } req{};
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = 1;
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = ~0u;
    req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(nl.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return fail_errno("sock_diag request for unix sockets");
    std::vector<uint8_t> buf(1 << 16);
    std::vector<UnixDiag> all;
    for (bool done = false; !done;) {
        ssize_t n = recv(nl.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("sock_diag reply for unix sockets");
        if (n == 0)
            return fail(EPROTO, "sock_diag: the kernel closed the dump before NLMSG_DONE");
        TRY_VOID(parse_unix_diag(std::span(buf.data(), static_cast<size_t>(n)), all, done));
    }
    std::map<uint32_t, UnixDiag> out;
    for (auto& d : all)
        out[d.ino] = std::move(d);
    return out;
}

}  // namespace criu
