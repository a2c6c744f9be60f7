#include "migrate/net/socket_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace criu {

namespace {

// Waits for `events` on fd; false on timeout.
Expected<bool> wait_fd(int fd, short events, int timeout_ms) {
    for (;;) {
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;  // signals of ours are flags checked by the callers between messages
        if (r < 0)
            return fail_errno("poll");
        return r > 0;
    }
}

void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Large buffers: a page batch is 4 MiB and the link is fast.
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

}  // namespace

std::string describe_sockaddr(const sockaddr* sa, socklen_t len) {
    char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return "?";
    if (sa->sa_family == AF_INET6)
        return fmt::format("[{}]:{}", host, serv);
    return fmt::format("{}:{}", host, serv);
}

Expected<Endpoint> Endpoint::from(const std::string& host, int port) {
    if (host.empty())
        return fail(EINVAL, "no address given (--address A)");
    if (port <= 0 || port > 65535)
        return failf(EINVAL, "port {} is not a TCP port (--port 1..65535)", port);
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string ps = std::to_string(port);
    int r = getaddrinfo(host.c_str(), ps.c_str(), &hints, &res);
    if (r != 0 || !res)
        return failf(EINVAL, "'{}' is not a numeric IPv4 or IPv6 address ({})", host, gai_strerror(r));
    Endpoint ep;
    std::memcpy(&ep.addr, res->ai_addr, res->ai_addrlen);
    ep.len = res->ai_addrlen;
    freeaddrinfo(res);
    ep.text = describe_sockaddr(reinterpret_cast<const sockaddr*>(&ep.addr), ep.len);
    return ep;
}

Expected<Endpoint> Endpoint::parse(const std::string& s) {
    std::string host, port;
    if (!s.empty() && s[0] == '[') {
        size_t close = s.find(']');
        if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
            return failf(EINVAL, "'{}' is not ADDR:PORT ([v6addr]:PORT for IPv6)", s);
        host = s.substr(1, close - 1);
        port = s.substr(close + 2);
    } else {
        size_t colon = s.rfind(':');
        if (colon == std::string::npos || s.find(':') != colon)
            return failf(EINVAL, "'{}' is not ADDR:PORT ([v6addr]:PORT for IPv6)", s);
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0')
        return failf(EINVAL, "'{}': '{}' is not a port number", s, port);
    return with_context(from(host, static_cast<int>(p)), fmt::format("'{}'", s));
}

Expected<UniqueFd> listen_on(const Endpoint& ep) {
    UniqueFd fd(::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return fail_errno("socket");
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) < 0)
        return fail_errno("cannot bind {}", ep.text);
    if (::listen(fd.get(), 4) < 0)
        return fail_errno("cannot listen on {}", ep.text);
    return fd;
}

Expected<UniqueFd> accept_one(int listen_fd, int timeout_ms, std::string& peer, bool (*keep_waiting)()) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int slice = 200;
        if (timeout_ms >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return fail(ETIMEDOUT, "no connection arrived");
            slice = static_cast<int>(std::min<int64_t>(left.count(), slice));
        }
        if (keep_waiting && !keep_waiting())
            return fail(EINTR, "stopped while waiting for a connection");
        if (!TRY(wait_fd(listen_fd, POLLIN, slice)))
            continue;
        sockaddr_storage sa{};
        socklen_t len = sizeof sa;
        int c = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
                continue;
            return fail_errno("accept");
        }
        UniqueFd fd(c);
        tune(c);
        peer = describe_sockaddr(reinterpret_cast<sockaddr*>(&sa), len);
        return fd;
    }
}

Expected<UniqueFd> connect_to(const Endpoint& ep, int timeout_ms) {
    UniqueFd fd(::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return fail_errno("socket");
    tune(fd.get());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) < 0) {
        if (errno != EINPROGRESS)
            return fail_errno("cannot connect to {}", ep.text);
        if (!TRY(wait_fd(fd.get(), POLLOUT, timeout_ms)))
            return failf(ETIMEDOUT, "cannot connect to {}: no answer within {} ms", ep.text, timeout_ms);
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0)
            return fail(err, fmt::format("cannot connect to {}", ep.text));
    }
    int fl = fcntl(fd.get(), F_GETFL);
    fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

Status write_full(int fd, std::span<iovec> iov, int timeout_ms) {
    size_t i = 0;
    while (i < iov.size()) {
        if (iov[i].iov_len == 0) {
            ++i;
            continue;
        }
        if (!TRY(wait_fd(fd, POLLOUT, timeout_ms)))
            return failf(ETIMEDOUT, "the peer took nothing for {} ms", timeout_ms);
        msghdr mh{};
        mh.msg_iov = iov.data() + i;
        mh.msg_iovlen = std::min<size_t>(iov.size() - i, 1024);
        ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return fail_errno("sending to the peer");
        }
        size_t left = static_cast<size_t>(n);
        while (left > 0 && i < iov.size()) {
            size_t take = std::min(left, iov[i].iov_len);
            iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + take;
            iov[i].iov_len -= take;
            left -= take;
            if (iov[i].iov_len == 0)
                ++i;
        }
    }
    return {};
}

Status read_full(int fd, void* buf, size_t len, int timeout_ms) {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
        if (!TRY(wait_fd(fd, POLLIN, timeout_ms)))
            return failf(ETIMEDOUT, "the peer sent nothing for {} ms", timeout_ms);
        ssize_t n = ::recv(fd, p + got, len - got, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return fail_errno("receiving from the peer");
        }
        if (n == 0)
            return failf(ECONNRESET, "the peer closed the connection ({} of {} bytes of a message read)", got, len);
        got += static_cast<size_t>(n);
    }
    return {};
}

}  // namespace criu
