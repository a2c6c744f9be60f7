#include "criu/files/tcp_repair.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace criu {
namespace {

// A queue never holds more than the largest socket buffer the kernel allows (net.core.*mem_max
// and tcp_*mem are far below this); the image record cap (64 MiB) holds both queues.
constexpr uint32_t kMaxQueue = 24u << 20;
constexpr uint32_t kMaxBuf = 1u << 30;
constexpr int kSoBufLock = 72;  // SO_BUF_LOCK (Linux 5.14), not in every libc's headers
constexpr uint32_t kBufLockMask = 3;  // SOCK_SNDBUF_LOCK | SOCK_RCVBUF_LOCK

Status set_opt(int fd, int level, int opt, const void* v, socklen_t len, const char* what) {
    if (setsockopt(fd, level, opt, v, len) != 0)
        return fail_errno("{}", what);
    return {};
}

Status set_int(int fd, int level, int opt, int v, const char* what) {
    if (setsockopt(fd, level, opt, &v, sizeof v) != 0)
        return fail_errno("{} {}", what, v);
    return {};
}

Expected<int> get_int(int fd, int level, int opt, const char* what) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, opt, &v, &len) != 0)
        return fail_errno("{}", what);
    return v;
}

Expected<int> ioctl_int(int fd, unsigned long req, const char* what) {
    int v = 0;
    if (ioctl(fd, req, &v) != 0)
        return fail_errno("{}", what);
    return v;
}

Status select_queue(int fd, int q) { return set_int(fd, SOL_TCP, TCP_REPAIR_QUEUE, q, "TCP_REPAIR_QUEUE"); }

// In repair mode MSG_PEEK reads the selected queue from its start (the send queue always; the
// receive queue from SO_PEEK_OFF when the process set one, so it is put to 0 meanwhile).
Expected<std::string> peek_queue(int fd, int q, size_t len, const char* name) {
    std::string data;
    if (len == 0)
        return data;
    TRY_VOID(select_queue(fd, q));
    int peek_off = -1;
    if (q == TCP_RECV_QUEUE) {
        peek_off = TRY(get_int(fd, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF"));
        if (peek_off >= 0)
            TRY_VOID(set_int(fd, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF"));
    }
    // The send queue is copied whole skb by skb (tcp_peek_sndq): room for more than asked.
    data.resize(len + 65536);
    ssize_t n;
    do
        n = recv(fd, data.data(), data.size(), MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    int err = errno;
    if (peek_off >= 0)
        TRY_VOID(set_int(fd, SOL_SOCKET, SO_PEEK_OFF, peek_off, "putting SO_PEEK_OFF back"));
    if (n < 0) {
        errno = err;
        return fail_errno("reading the {} queue ({} bytes)", name, len);
    }
    if (static_cast<size_t>(n) != len)
        return failf(EIO, "the {} queue holds {} bytes, {} were read", name, len, n);
    data.resize(len);
    return data;
}

Status dump_state(int fd, images::TcpRepair& out) {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &len) != 0)
        return fail_errno("TCP_INFO");
    if (ti.tcpi_state != TCP_ESTABLISHED)
        return failf(ENOTSUP, "the connection left state ESTABLISHED (now {}) while being dumped", ti.tcpi_state);
    int inq = TRY(ioctl_int(fd, SIOCINQ, "SIOCINQ"));
    int outq = TRY(ioctl_int(fd, SIOCOUTQ, "SIOCOUTQ"));
    int unsent = TRY(ioctl_int(fd, SIOCOUTQNSD, "SIOCOUTQNSD"));
    if (inq < 0 || outq < 0 || unsent < 0 || unsent > outq || uint32_t(inq) > kMaxQueue || uint32_t(outq) > kMaxQueue)
        return failf(EIO, "queue sizes {} (receive), {} (send, {} not sent) are out of range", inq, outq, unsent);
    out.set_mss(static_cast<uint32_t>(TRY(get_int(fd, SOL_TCP, TCP_MAXSEG, "TCP_MAXSEG"))));
    out.set_options(ti.tcpi_options);
    out.set_snd_wscale(ti.tcpi_snd_wscale);
    out.set_rcv_wscale(ti.tcpi_rcv_wscale);
    out.set_timestamp(static_cast<uint32_t>(TRY(get_int(fd, SOL_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP"))));
    tcp_repair_window w{};
    len = sizeof w;
    if (getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, &len) != 0 || len != sizeof w)
        return fail_errno("TCP_REPAIR_WINDOW");
    out.set_snd_wl1(w.snd_wl1);
    out.set_snd_wnd(w.snd_wnd);
    out.set_max_window(w.max_window);
    out.set_rcv_wnd(w.rcv_wnd);
    out.set_rcv_wup(w.rcv_wup);

    TRY_VOID(select_queue(fd, TCP_RECV_QUEUE));
    out.set_rcv_seq(static_cast<uint32_t>(TRY(get_int(fd, SOL_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ (receive)"))));
    TRY_VOID(select_queue(fd, TCP_SEND_QUEUE));
    out.set_snd_seq(static_cast<uint32_t>(TRY(get_int(fd, SOL_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ (send)"))));
    out.set_recv_queue(TRY(peek_queue(fd, TCP_RECV_QUEUE, static_cast<size_t>(inq), "receive")));
    out.set_send_queue(TRY(peek_queue(fd, TCP_SEND_QUEUE, static_cast<size_t>(outq), "send")));
    out.set_unsent(static_cast<uint32_t>(unsent));
    TRY_VOID(select_queue(fd, TCP_NO_QUEUE));

    out.set_rcvbuf(static_cast<uint32_t>(TRY(get_int(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"))));
    out.set_sndbuf(static_cast<uint32_t>(TRY(get_int(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"))));
    out.set_buf_lock(static_cast<uint32_t>(TRY(get_int(fd, SOL_SOCKET, kSoBufLock, "SO_BUF_LOCK"))) & kBufLockMask);
    return {};
}

// Queue data goes in with send(); in repair mode each call takes what fits one skb.
Status send_all(int fd, const char* data, size_t len, const char* what) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            // The never-sent tail, sent normally, waits for room in the send buffer (it held
            // all of it before the dump, so room comes as soon as the peer acknowledges).
            pollfd p{fd, POLLOUT, 0};
            if (poll(&p, 1, 10000) != 1)
                return failf(EAGAIN, "{}: no room in the send buffer for {} more bytes after 10 s", what, len - off);
            continue;
        }
        if (n <= 0)
            return fail_errno("{}: {} of {} bytes", what, off, len);
        off += static_cast<size_t>(n);
    }
    return {};
}

}  // namespace

std::pair<sockaddr_storage, socklen_t> to_sockaddr(int family, const std::string& ip, uint32_t port) {
    sockaddr_storage ss{};
    if (family == AF_INET) {
        auto& s = reinterpret_cast<sockaddr_in&>(ss);
        s.sin_family = AF_INET;
        s.sin_port = htons(static_cast<uint16_t>(port));
        std::memcpy(&s.sin_addr, ip.data(), 4);
        return {ss, sizeof(sockaddr_in)};
    }
    auto& s = reinterpret_cast<sockaddr_in6&>(ss);
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&s.sin6_addr, ip.data(), 16);
    return {ss, sizeof(sockaddr_in6)};
}

Status tcp_set_repair(int fd, int mode) { return set_int(fd, SOL_TCP, TCP_REPAIR, mode, "TCP_REPAIR"); }

Status tcp_repair_dump(int fd, images::TcpRepair& out, const std::string& where) {
    Status st = dump_state(fd, out);
    if (!st) {
        // Leave the socket as the process knows it (the caller turns repair off).
        int none = TCP_NO_QUEUE;
        setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &none, sizeof none);
        return failf(st.error().err(), "{}: {}", where, st.error().message());
    }
    return {};
}

Status tcp_repair_validate(const images::TcpRepair& r) {
    if (r.send_queue().size() > kMaxQueue || r.recv_queue().size() > kMaxQueue)
        return failf(EINVAL, "queues of {} (send) and {} (receive) bytes, above {}", r.send_queue().size(),
                     r.recv_queue().size(), kMaxQueue);
    if (r.unsent() > r.send_queue().size())
        return failf(EINVAL, "{} bytes never sent out of a send queue of {}", r.unsent(), r.send_queue().size());
    if (r.mss() == 0 || r.mss() > 65535)
        return failf(EINVAL, "MSS {}", r.mss());
    if (r.snd_wscale() > 14 || r.rcv_wscale() > 14)
        return failf(EINVAL, "window scale {} / {} (at most 14)", r.snd_wscale(), r.rcv_wscale());
    if (r.rcvbuf() > kMaxBuf || r.sndbuf() > kMaxBuf)
        return failf(EINVAL, "buffer sizes {} / {}", r.rcvbuf(), r.sndbuf());
    if (r.buf_lock() & ~kBufLockMask)
        return failf(EINVAL, "SO_BUF_LOCK {:#x}", r.buf_lock());
    if (r.max_window() < r.snd_wnd())
        return failf(EINVAL, "send window {} above the largest window {}", r.snd_wnd(), r.max_window());
    return {};
}

Status tcp_repair_restore(int fd, const images::InetSocket& s, const std::string& where) {
    const images::TcpRepair& r = s.tcp();
    auto step = [&](Status st) -> Status {
        if (!st)
            return failf(st.error().err(), "{}: {}", where, st.error().message());
        return {};
    };
    TRY_VOID(step(tcp_set_repair(fd, TCP_REPAIR_ON)));
    // Repair mode binds with SK_FORCE_REUSE: the port may be held by the restored listener
    // that accepted this connection, or by the dumped socket's remains in TIME_WAIT.
    auto [la, llen] = to_sockaddr(s.family(), s.src_addr(), s.src_port());
    if (bind(fd, reinterpret_cast<sockaddr*>(&la), llen) != 0)
        return step(fail_errno("bind"));
    const std::string& sendq = r.send_queue();
    const std::string& recvq = r.recv_queue();
    const size_t sent = sendq.size() - r.unsent();
    // The sequence numbers where the queues start; sending their data moves them to the dumped ones.
    TRY_VOID(step(select_queue(fd, TCP_RECV_QUEUE)));
    TRY_VOID(step(set_int(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(r.rcv_seq() - uint32_t(recvq.size())),
                          "TCP_QUEUE_SEQ (receive)")));
    TRY_VOID(step(select_queue(fd, TCP_SEND_QUEUE)));
    TRY_VOID(step(set_int(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(r.snd_seq() - uint32_t(sendq.size())),
                          "TCP_QUEUE_SEQ (send)")));
    // Buffers as large as the dumped ones (autotuning had grown those), so that both queues fit;
    // SO_BUF_LOCK then gives autotuning back unless the process had fixed a size itself.
    if (r.rcvbuf())
        TRY_VOID(step(set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, static_cast<int>(r.rcvbuf() / 2), "SO_RCVBUFFORCE")));
    if (r.sndbuf())
        TRY_VOID(step(set_int(fd, SOL_SOCKET, SO_SNDBUFFORCE, static_cast<int>(r.sndbuf() / 2), "SO_SNDBUFFORCE")));
    // In repair mode connect() sends no SYN: the socket is ESTABLISHED at once.
    auto [pa, plen] = to_sockaddr(s.family(), s.dst_addr(), s.dst_port());
    if (connect(fd, reinterpret_cast<sockaddr*>(&pa), plen) != 0)
        return step(fail_errno("connect (repair mode)"));
    std::vector<tcp_repair_opt> opts;
    opts.push_back({TCPOPT_MAXSEG, r.mss()});
    if (r.options() & TCPI_OPT_WSCALE)
        opts.push_back({TCPOPT_WINDOW, r.snd_wscale() | (r.rcv_wscale() << 16)});
    if (r.options() & TCPI_OPT_TIMESTAMPS)
        opts.push_back({TCPOPT_TIMESTAMP, 0});
    if (r.options() & TCPI_OPT_SACK)
        opts.push_back({TCPOPT_SACK_PERMITTED, 0});
    TRY_VOID(step(set_opt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts.data(),
                          static_cast<socklen_t>(opts.size() * sizeof(tcp_repair_opt)), "TCP_REPAIR_OPTIONS")));
    TRY_VOID(step(set_int(fd, SOL_TCP, TCP_TIMESTAMP, static_cast<int>(r.timestamp()), "TCP_TIMESTAMP")));
    // Receive queue: data the peer sees acknowledged. Send queue, sent part: data the peer may
    // acknowledge any moment (it goes out again on the retransmission timer).
    TRY_VOID(step(select_queue(fd, TCP_RECV_QUEUE)));
    TRY_VOID(step(send_all(fd, recvq.data(), recvq.size(), "filling the receive queue")));
    TRY_VOID(step(select_queue(fd, TCP_SEND_QUEUE)));
    TRY_VOID(step(send_all(fd, sendq.data(), sent, "filling the send queue")));
    TRY_VOID(step(select_queue(fd, TCP_NO_QUEUE)));
    tcp_repair_window w{r.snd_wl1(), r.snd_wnd(), r.max_window(), r.rcv_wnd(), r.rcv_wup()};
    TRY_VOID(step(set_opt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof w, "TCP_REPAIR_WINDOW")));
    TRY_VOID(step(tcp_set_repair(fd, TCP_REPAIR_OFF)));
    // The never-sent tail is ordinary data now (the network lock holds it until restore ends).
    TRY_VOID(step(send_all(fd, sendq.data() + sent, sendq.size() - sent, "sending the never-sent data")));
    TRY_VOID(step(set_int(fd, SOL_SOCKET, kSoBufLock, static_cast<int>(r.buf_lock()), "SO_BUF_LOCK")));
    return {};
}

}  // namespace criu
