// TCP and UDP sockets over IPv4 and IPv6: TCP listening (and not yet connected) sockets, UDP
// sockets bound and connected with their queued datagrams, and the options that change how a
// socket behaves (SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE and its timers, TCP_NODELAY,
// IPV6_V6ONLY, SO_RCVBUF/SO_SNDBUF when set, O_NONBLOCK).
//
// Everything is read from the stolen fd (getsockname, getpeername, getsockopt, TCP_INFO); the
// datagrams are copied with SO_PEEK_OFF + MSG_PEEK like unix queues. On restore a datagram must
// come from its original sender (a connected UDP socket drops anything else), whose port may
// be taken by a restored socket: it is sent through a raw socket with the sender's address and
// port in a hand-made UDP header.
//
// Established TCP connections need --tcp-established: each is blocked by the dump's network
// lock (net_lock.h), put in repair mode and read (tcp_repair.h); the socket stays in repair mode
// until the dump ends, so that the dumped process, killed, closes it without a FIN or RST.
// Half-closed connections (FIN sent or received) are refused.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/net_lock.h"
#include "criu/files/sockets.h"
#include "criu/files/tcp_repair.h"

namespace criu {
namespace {

constexpr size_t kMaxDatagrams = 4096;
constexpr size_t kMaxDatagram = 65507;
constexpr uint32_t kMaxInetBacklog = 1u << 20;

struct Addr {
    int family = 0;
    std::string ip;  // 4 or 16 bytes
    uint32_t port = 0;
};

Addr from_sockaddr(const sockaddr_storage& ss) {
    Addr a;
    a.family = ss.ss_family;
    if (ss.ss_family == AF_INET) {
        auto& s = reinterpret_cast<const sockaddr_in&>(ss);
        a.ip.assign(reinterpret_cast<const char*>(&s.sin_addr), 4);
        a.port = ntohs(s.sin_port);
    } else if (ss.ss_family == AF_INET6) {
        auto& s = reinterpret_cast<const sockaddr_in6&>(ss);
        a.ip.assign(reinterpret_cast<const char*>(&s.sin6_addr), 16);
        a.port = ntohs(s.sin6_port);
    }
    return a;
}

std::string addr_str(int family, const std::string& ip, uint32_t port) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ip.size() == (family == AF_INET ? 4u : 16u))
        inet_ntop(family, ip.data(), buf, sizeof buf);
    return family == AF_INET6 ? fmt::format("[{}]:{}", buf, port) : fmt::format("{}:{}", buf, port);
}

std::string sk_name(const images::InetSocket& s) {
    return fmt::format("{} {} socket {}", s.protocol() == IPPROTO_TCP ? "TCP" : "UDP",
                       s.family() == AF_INET6 ? "IPv6" : "IPv4", addr_str(s.family(), s.src_addr(), s.src_port()));
}

int get_int(int fd, int level, int opt, bool& ok) {
    int v = 0;
    socklen_t len = sizeof v;
    ok = getsockopt(fd, level, opt, &v, &len) == 0;
    return v;
}

const char* tcp_state_name(int s) {
    static const char* names[] = {"?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                                  "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"};
    return s >= 0 && s < static_cast<int>(std::size(names)) ? names[s] : "?";
}

// ---------------------------------------------------------------- dump half

Status precheck_inet(const FdView& v, const Options& opts) {
    int fd = v.stolen.get();
    bool ok;
    int proto = get_int(fd, SOL_SOCKET, SO_PROTOCOL, ok);
    int type = get_int(fd, SOL_SOCKET, SO_TYPE, ok);
    if (!ok || !((proto == IPPROTO_TCP && type == SOCK_STREAM) || (proto == IPPROTO_UDP && type == SOCK_DGRAM)))
        return failf(ENOTSUP, "{}: inet socket of type {} protocol {} (only TCP and UDP are supported)", v.where(), type,
                     proto);
    if (proto != IPPROTO_TCP)
        return {};
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return fail_errno("{}: TCP_INFO", v.where());
    sockaddr_storage l{}, p{};
    socklen_t ll = sizeof l, pl = sizeof p;
    getsockname(fd, reinterpret_cast<sockaddr*>(&l), &ll);
    getpeername(fd, reinterpret_cast<sockaddr*>(&p), &pl);
    Addr la = from_sockaddr(l), pa = from_sockaddr(p);
    if (ti.tcpi_state == TCP_LISTEN && ti.tcpi_unacked > 0)
        return failf(ENOTSUP, "{}: TCP listener {} has {} connection(s) not accepted yet (not supported)", v.where(),
                     addr_str(la.family, la.ip, la.port), ti.tcpi_unacked);
    std::string conn = fmt::format("{} -> {}", addr_str(la.family, la.ip, la.port), addr_str(pa.family, pa.ip, pa.port));
    if (ti.tcpi_state == TCP_ESTABLISHED) {
        if (!opts.tcp_established)
            return failf(ENOTSUP, "{}: established TCP connection {} (dump it with --tcp-established)", v.where(), conn);
        return {};
    }
    if (ti.tcpi_state == TCP_SYN_SENT || ti.tcpi_state == TCP_SYN_RECV)
        return failf(ENOTSUP, "{}: TCP connection {} is being set up (state {}); not supported", v.where(), conn,
                     tcp_state_name(ti.tcpi_state));
    if (ti.tcpi_state != TCP_LISTEN && ti.tcpi_state != TCP_CLOSE)
        return failf(ENOTSUP, "{}: TCP connection {} is half-closed (state {}: a FIN was sent or received); not "
                              "supported", v.where(), conn, tcp_state_name(ti.tcpi_state));
    return {};
}

// SO_RCVBUF/SO_SNDBUF are kept only when they differ from what a new socket of the same kind
// gets (set by the process); the kernel doubles what setsockopt asks for.
Status dump_buffers(const FdView& v, int domain, int type, images::InetSocket& s) {
    UniqueFd fresh(socket(domain, type | SOCK_CLOEXEC, 0));
    if (!fresh)
        return fail_errno("{}: a new socket to compare buffer sizes with", v.where());
    bool ok1, ok2, ok3, ok4;
    int rcv = get_int(v.stolen.get(), SOL_SOCKET, SO_RCVBUF, ok1), snd = get_int(v.stolen.get(), SOL_SOCKET, SO_SNDBUF, ok2);
    int rcv0 = get_int(fresh.get(), SOL_SOCKET, SO_RCVBUF, ok3), snd0 = get_int(fresh.get(), SOL_SOCKET, SO_SNDBUF, ok4);
    if (!(ok1 && ok2 && ok3 && ok4))
        return fail_errno("{}: SO_RCVBUF/SO_SNDBUF", v.where());
    if (rcv != rcv0)
        s.set_rcvbuf(static_cast<uint32_t>(rcv / 2));
    if (snd != snd0)
        s.set_sndbuf(static_cast<uint32_t>(snd / 2));
    return {};
}

Status peek_datagrams(const FdView& v, images::InetSocket& s) {
    int fd = v.stolen.get();
    bool ok;
    int old_off = get_int(fd, SOL_SOCKET, SO_PEEK_OFF, ok);
    if (!ok)
        return fail_errno("{}: SO_PEEK_OFF", v.where());
    int zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) != 0)
        return fail_errno("{}: setting SO_PEEK_OFF", v.where());
    s.set_peek_off(old_off);
    std::vector<char> buf(kMaxDatagram + 1);
    Status st;
    for (;;) {
        iovec iov{buf.data(), buf.size()};
        sockaddr_storage from{};
        msghdr m{};
        m.msg_name = &from;
        m.msg_namelen = sizeof from;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        ssize_t n = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            st = fail_errno("{}: peeking at the queued datagrams", v.where());
            break;
        }
        if (n == 0) {
            st = failf(ENOTSUP, "{}: a zero-length datagram is queued (not supported)", v.where());
            break;
        }
        if (static_cast<size_t>(s.queue_size()) >= kMaxDatagrams) {
            st = failf(ENOTSUP, "{}: more than {} datagrams queued", v.where(), kMaxDatagrams);
            break;
        }
        Addr a = from_sockaddr(from);
        auto* d = s.add_queue();
        d->set_data(std::string(buf.data(), static_cast<size_t>(n)));
        d->set_src_addr(a.ip);
        d->set_src_port(a.port);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old_off, sizeof old_off) != 0 && st)
        st = fail_errno("{}: restoring SO_PEEK_OFF", v.where());
    return st;
}

Status dump_inet(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    TRY_VOID(precheck_inet(v, c.opts));
    int fd = v.stolen.get();
    bool ok;
    auto* s = out.mutable_inet();
    int domain = get_int(fd, SOL_SOCKET, SO_DOMAIN, ok);
    s->set_family(domain);
    s->set_protocol(get_int(fd, SOL_SOCKET, SO_PROTOCOL, ok));
    s->set_flags(description_flags(v));
    int type = s->protocol() == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
    sockaddr_storage l{}, p{};
    socklen_t ll = sizeof l, pl = sizeof p;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&l), &ll) != 0)
        return fail_errno("{}: getsockname", v.where());
    Addr la = from_sockaddr(l);
    s->set_src_addr(la.ip);
    s->set_src_port(la.port);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&p), &pl) == 0) {
        Addr pa = from_sockaddr(p);
        s->set_dst_addr(pa.ip);
        s->set_dst_port(pa.port);
    } else if (errno != ENOTCONN) {
        return fail_errno("{}: getpeername", v.where());
    }
    if (s->protocol() == IPPROTO_TCP) {
        tcp_info ti{};
        socklen_t len = sizeof ti;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
            return fail_errno("{}: TCP_INFO", v.where());
        s->set_state(ti.tcpi_state);
        if (ti.tcpi_state == TCP_LISTEN)
            s->set_backlog(ti.tcpi_sacked);  // a listener's TCP_INFO reports sk_max_ack_backlog there
        s->set_nodelay(get_int(fd, IPPROTO_TCP, TCP_NODELAY, ok) != 0);
    } else {
        s->set_state(s->dst_port() ? TCP_ESTABLISHED : TCP_CLOSE);
    }
    s->set_reuseaddr(get_int(fd, SOL_SOCKET, SO_REUSEADDR, ok) != 0);
    s->set_reuseport(get_int(fd, SOL_SOCKET, SO_REUSEPORT, ok) != 0);
    s->set_keepalive(get_int(fd, SOL_SOCKET, SO_KEEPALIVE, ok) != 0);
    if (s->keepalive() && s->protocol() == IPPROTO_TCP) {
        s->set_keepidle(static_cast<uint32_t>(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, ok)));
        s->set_keepintvl(static_cast<uint32_t>(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, ok)));
        s->set_keepcnt(static_cast<uint32_t>(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT, ok)));
    }
    if (domain == AF_INET6)
        s->set_v6only(get_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, ok) != 0);
    TRY_VOID(dump_buffers(v, domain, type, *s));
    s->set_peek_off(-1);
    if (s->protocol() == IPPROTO_UDP)
        TRY_VOID(peek_datagrams(v, *s));
    if (s->protocol() == IPPROTO_TCP && s->state() == TCP_ESTABLISHED) {
        // Every ordinary option is read above: repair mode changes SO_REUSEADDR.
        int peek_off = get_int(fd, SOL_SOCKET, SO_PEEK_OFF, ok);
        s->set_peek_off(ok ? peek_off : -1);
        TcpTuple t{domain, s->src_addr(), s->src_port(), s->dst_addr(), s->dst_port()};
        std::string where = fmt::format("{}: TCP connection {}", v.where(), tuple_str(t));
        TRY_VOID_CTX(c.sockets.tcp_repair_on(fd, t, s->reuseaddr(), v.pid, c.log), "{}", where);
        TRY_VOID(tcp_repair_dump(fd, *s->mutable_tcp(), where));
        const auto& r = s->tcp();
        c.log.info("files", "{}: {} bytes to read, {} bytes not acknowledged ({} never sent), mss {}, options {:#x}",
                   where, r.recv_queue().size(), r.send_queue().size(), r.unsent(), r.mss(), r.options());
    }
    c.log.debug("files", "{}: {} state {} peer {} {} datagram(s)", v.where(), sk_name(*s), tcp_state_name(s->state()),
                addr_str(s->family(), s->dst_addr(), s->dst_port()), s->queue_size());
    return {};
}

// ---------------------------------------------------------------- validation

Status validate_inet(const images::FileEntry& e) {
    if (!e.has_inet())
        return fail(EINVAL, "inet socket entry without InetSocket data");
    const auto& s = e.inet();
    if (s.family() != AF_INET && s.family() != AF_INET6)
        return failf(EINVAL, "inet socket of family {}", s.family());
    std::string n = sk_name(s);
    size_t alen = s.family() == AF_INET ? 4 : 16;
    if (s.protocol() != IPPROTO_TCP && s.protocol() != IPPROTO_UDP)
        return failf(EINVAL, "{}: protocol {}", n, s.protocol());
    if (s.src_addr().size() != alen || (!s.dst_addr().empty() && s.dst_addr().size() != alen))
        return failf(EINVAL, "{}: addresses of {} and {} bytes for family {}", n, s.src_addr().size(),
                     s.dst_addr().size(), s.family());
    if (s.src_port() > 65535 || s.dst_port() > 65535)
        return failf(EINVAL, "{}: port {} or {} is above 65535", n, s.src_port(), s.dst_port());
    TRY_VOID_CTX(validate_anon_flags(s.flags(), O_RDWR), "{}", n);
    bool tcp = s.protocol() == IPPROTO_TCP;
    if (tcp && s.state() != TCP_LISTEN && s.state() != TCP_CLOSE && s.state() != TCP_ESTABLISHED)
        return failf(EINVAL, "{}: TCP state {} cannot be restored", n, s.state());
    if (s.has_tcp() != (tcp && s.state() == TCP_ESTABLISHED))
        return failf(EINVAL, "{}: repair data {} a TCP socket in state {}", n, s.has_tcp() ? "on" : "missing for",
                     tcp_state_name(s.state()));
    if (s.has_tcp()) {
        if (s.dst_port() == 0 || s.src_port() == 0)
            return failf(EINVAL, "{}: an established TCP connection without both ports", n);
        TRY_VOID_CTX(tcp_repair_validate(s.tcp()), "{} (connected to {})", n,
                     addr_str(s.family(), s.dst_addr(), s.dst_port()));
    }
    if (!tcp && s.state() != TCP_CLOSE && s.state() != TCP_ESTABLISHED)
        return failf(EINVAL, "{}: UDP state {}", n, s.state());
    if (!tcp && (s.state() == TCP_ESTABLISHED) != (s.dst_port() != 0))
        return failf(EINVAL, "{}: connected state and peer port {} disagree", n, s.dst_port());
    if (s.backlog() > kMaxInetBacklog)
        return failf(EINVAL, "{}: backlog {}", n, s.backlog());
    if (tcp && s.queue_size())
        return failf(EINVAL, "{}: queued datagrams on a TCP socket", n);
    if (static_cast<size_t>(s.queue_size()) > kMaxDatagrams)
        return failf(EINVAL, "{}: {} queued datagrams", n, s.queue_size());
    for (const auto& d : s.queue())
        if (d.data().empty() || d.data().size() > kMaxDatagram || d.src_addr().size() != alen || d.src_port() > 65535 ||
            d.src_port() == 0)
            return failf(EINVAL, "{}: a queued datagram of {} bytes from {}", n, d.data().size(),
                         addr_str(s.family(), d.src_addr(), d.src_port()));
    if (s.rcvbuf() > (1u << 30) || s.sndbuf() > (1u << 30))
        return failf(EINVAL, "{}: buffer sizes {} / {}", n, s.rcvbuf(), s.sndbuf());
    if (s.peek_off() < -1)
        return failf(EINVAL, "{}: SO_PEEK_OFF {}", n, s.peek_off());
    return {};
}

// ---------------------------------------------------------------- restore half

Status set_int(int fd, int level, int opt, int v, const char* what) {
    if (setsockopt(fd, level, opt, &v, sizeof v) != 0)
        return fail_errno("{} {}", what, v);
    return {};
}

// A datagram from `src` to `dst`, made by hand so that the sender's port may be one that a
// restored socket already holds. IPv4: no checksum (0 is allowed); IPv6: the kernel fills it in
// (IPV6_CHECKSUM at offset 6).
Status inject_datagram(int family, const images::InetDatagram& d, const std::string& dst_ip, uint32_t dst_port) {
    UniqueFd raw(socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP));
    if (!raw)
        return fail_errno("raw socket for queued datagrams");
    if (family == AF_INET6)
        TRY_VOID(set_int(raw.get(), IPPROTO_IPV6, IPV6_CHECKSUM, 6, "IPV6_CHECKSUM"));
    // The sender's address may not be local any more (a remote peer): IP_FREEBIND lets the raw
    // socket use it as the source anyway.
    TRY_VOID(set_int(raw.get(), family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
                     family == AF_INET ? IP_FREEBIND : IPV6_FREEBIND, 1, "IP_FREEBIND"));
    auto [src, slen] = to_sockaddr(family, d.src_addr(), 0);
    if (bind(raw.get(), reinterpret_cast<sockaddr*>(&src), slen) != 0)
        return fail_errno("binding a raw socket to {}", addr_str(family, d.src_addr(), 0));
    std::string pkt(sizeof(udphdr), '\0');
    udphdr h{};
    h.source = htons(static_cast<uint16_t>(d.src_port()));
    h.dest = htons(static_cast<uint16_t>(dst_port));
    h.len = htons(static_cast<uint16_t>(sizeof h + d.data().size()));
    std::memcpy(pkt.data(), &h, sizeof h);
    pkt += d.data();
    auto [dst, dlen] = to_sockaddr(family, dst_ip, 0);
    if (sendto(raw.get(), pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&dst), dlen) !=
        static_cast<ssize_t>(pkt.size()))
        return fail_errno("sending a queued datagram of {} bytes from {}", d.data().size(),
                          addr_str(family, d.src_addr(), d.src_port()));
    return {};
}

// Loopback delivery normally completes inside sendto() (the softirq runs as it returns); wait
// a little in case it did not, so the process never starts with an empty queue.
Status wait_queued(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1000) != 1)
        return fail(EIO, "the queued datagrams did not arrive");
    return {};
}

// What an established TCP connection gets after repair: the options the process had set.
Expected<UniqueFd> open_tcp_established(KindRestoreContext& c, const images::FileEntry& e, UniqueFd fd) {
    const auto& s = e.inet();
    int f = fd.get();
    TcpTuple t{s.family(), s.src_addr(), s.src_port(), s.dst_addr(), s.dst_port()};
    std::string n = fmt::format("TCP connection {}", tuple_str(t));
    TRY_VOID(tcp_repair_restore(f, s, n));
    TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_REUSEADDR, s.reuseaddr(), "SO_REUSEADDR"), "{}", n);
    TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_NODELAY, s.nodelay(), "TCP_NODELAY"), "{}", n);
    TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_KEEPALIVE, s.keepalive(), "SO_KEEPALIVE"), "{}", n);
    if (s.keepalive() && s.keepidle()) {
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(s.keepidle()), "TCP_KEEPIDLE"), "{}", n);
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(s.keepintvl()), "TCP_KEEPINTVL"), "{}", n);
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(s.keepcnt()), "TCP_KEEPCNT"), "{}", n);
    }
    if (s.peek_off() >= 0)
        TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_PEEK_OFF, s.peek_off(), "SO_PEEK_OFF"), "{}", n);
    TRY_VOID_CTX(set_status_flags(f, s.flags()), "{}", n);
    if (c.log)
        c.log->info("files", "{}: restored with {} bytes to read and {} to send", n, s.tcp().recv_queue().size(),
                    s.tcp().send_queue().size());
    return c.to_high(std::move(fd));
}

Expected<UniqueFd> open_inet(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& s = e.inet();
    std::string n = sk_name(s);
    int type = s.protocol() == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
    UniqueFd fd(socket(s.family(), type | SOCK_CLOEXEC | SOCK_NONBLOCK, s.protocol()));
    if (!fd)
        return fail_errno("{}: socket", n);
    int f = fd.get();
    if (s.family() == AF_INET6)
        TRY_VOID_CTX(set_int(f, IPPROTO_IPV6, IPV6_V6ONLY, s.v6only(), "IPV6_V6ONLY"), "{}", n);
    TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_REUSEPORT, s.reuseport(), "SO_REUSEPORT"), "{}", n);
    if (s.has_tcp())
        return open_tcp_established(c, e, std::move(fd));
    if (s.rcvbuf())
        TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_RCVBUF, static_cast<int>(s.rcvbuf()), "SO_RCVBUF"), "{}", n);
    if (s.sndbuf())
        TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_SNDBUF, static_cast<int>(s.sndbuf()), "SO_SNDBUF"), "{}", n);
    // Connections of the dumped socket may linger in TIME_WAIT on its port: bind with
    // SO_REUSEADDR, then put the process's own setting back.
    bool bound = s.src_port() != 0 || s.state() == TCP_LISTEN;
    if (bound) {
        TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"), "{}", n);
        auto [a, alen] = to_sockaddr(s.family(), s.src_addr(), s.src_port());
        if (bind(f, reinterpret_cast<sockaddr*>(&a), alen) != 0)
            return fail_errno("{}: bind", n);
    }
    TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_REUSEADDR, s.reuseaddr(), "SO_REUSEADDR"), "{}", n);
    if (s.state() == TCP_LISTEN && listen(f, static_cast<int>(s.backlog())) != 0)
        return fail_errno("{}: listen with backlog {}", n, s.backlog());
    if (s.protocol() == IPPROTO_UDP && s.dst_port()) {
        auto [a, alen] = to_sockaddr(s.family(), s.dst_addr(), s.dst_port());
        if (connect(f, reinterpret_cast<sockaddr*>(&a), alen) != 0)
            return fail_errno("{}: connect to {}", n, addr_str(s.family(), s.dst_addr(), s.dst_port()));
    }
    if (s.protocol() == IPPROTO_TCP)
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_NODELAY, s.nodelay(), "TCP_NODELAY"), "{}", n);
    TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_KEEPALIVE, s.keepalive(), "SO_KEEPALIVE"), "{}", n);
    if (s.keepalive() && s.protocol() == IPPROTO_TCP && s.keepidle()) {
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(s.keepidle()), "TCP_KEEPIDLE"), "{}", n);
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(s.keepintvl()), "TCP_KEEPINTVL"), "{}", n);
        TRY_VOID_CTX(set_int(f, IPPROTO_TCP, TCP_KEEPCNT, static_cast<int>(s.keepcnt()), "TCP_KEEPCNT"), "{}", n);
    }
    if (s.queue_size()) {
        // The datagrams go to the address the socket is bound to; a wildcard means loopback.
        std::string to = s.src_addr();
        if (to == std::string(to.size(), '\0')) {
            to.assign(to.size(), '\0');
            to.back() = 1;  // ::1
            if (s.family() == AF_INET) {
                in_addr lo{htonl(INADDR_LOOPBACK)};
                to.assign(reinterpret_cast<const char*>(&lo), 4);
            }
        }
        for (const auto& d : s.queue())
            TRY_VOID_CTX(inject_datagram(s.family(), d, to, s.src_port()), "{}", n);
        TRY_VOID_CTX(wait_queued(f), "{}", n);
    }
    if (s.peek_off() >= 0)
        TRY_VOID_CTX(set_int(f, SOL_SOCKET, SO_PEEK_OFF, s.peek_off(), "SO_PEEK_OFF"), "{}", n);
    TRY_VOID_CTX(set_status_flags(f, s.flags()), "{}", n);
    return c.to_high(std::move(fd));
}

bool is_inet(const FdView& v) {
    if (!S_ISSOCK(v.st.st_mode))
        return false;
    int domain = -1;
    socklen_t len = sizeof domain;
    return getsockopt(v.stolen.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
           (domain == AF_INET || domain == AF_INET6);
}

}  // namespace

SocketDumpState::~SocketDumpState() {
    if (tcp_released_ || (repaired_.empty() && lock_.table().empty()))
        return;
    Log quiet(0);
    if (auto st = tcp_release(false, quiet); !st)
        fmt::print(stderr, "Warning: giving the TCP connections back after a failed dump: {}\n", st.error().str());
}

Status SocketDumpState::tcp_repair_on(int fd, const TcpTuple& t, bool reuseaddr, pid_t pid, Log& log) {
    // Blocked first: from the moment repair is on the socket ignores the peer, which must not
    // get an answer from anyone (KERNEL-NOTES pitfall 14).
    TRY_VOID(lock_.block(t, pid, log));
    UniqueFd own(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!own)
        return fail_errno("dup of the socket");
    TRY_VOID(tcp_set_repair(own.get(), TCP_REPAIR_ON));
    repaired_.push_back({std::move(own), reuseaddr, fmt::format("pid {}: TCP connection {}", pid, tuple_str(t))});
    return {};
}

Status SocketDumpState::tcp_repair_off_all() {
    Status first;
    for (auto& r : repaired_) {
        Status st = tcp_set_repair(r.fd.get(), TCP_REPAIR_OFF);
        if (st)
            st = set_int(r.fd.get(), SOL_SOCKET, SO_REUSEADDR, r.reuseaddr, "SO_REUSEADDR");
        if (!st && first)
            first = failf(st.error().err(), "{}: {}", r.name, st.error().message());
    }
    repaired_.clear();
    return first;
}

Status SocketDumpState::tcp_release(bool killed, Log& log) {
    tcp_released_ = true;
    if (killed) {
        // Closing our copies in repair mode sends nothing either.
        repaired_.clear();
        if (!lock_.table().empty())
            log.info("net", "the dumped TCP connections stay blocked (nft table inet {}) until restore",
                     lock_.table());
        lock_.keep();
        return {};
    }
    Status off = tcp_repair_off_all();
    Status unlocked = lock_.release(log);
    TRY_VOID(std::move(off));
    return unlocked;
}

const FdKindOps kInetKind{
    .name = "inet socket",
    .kind = images::FD_INET_SK,
    .match = is_inet,
    .precheck = precheck_inet,
    .dump = dump_inet,
    .validate = validate_inet,
    .open = open_inet,
};

}  // namespace criu
