// TCP plumbing for the migration transport: explicit numeric endpoints (never a name
// lookup: the receiver binds exactly where it is told), connect/accept with a deadline,
// and reads/writes that give up when the peer stays silent, so a dead peer never blocks
// a dump, a migration or `criu serve` for ever.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

struct Endpoint {
    sockaddr_storage addr{};
    socklen_t len = 0;
    std::string text;  // as given, for messages

    // "10.0.0.2:7000", "[fd00::2]:7000" (numeric only).
    static Expected<Endpoint> parse(const std::string& host_port);
    // --address A --port P as CRIU spells them.
    static Expected<Endpoint> from(const std::string& host, int port);
};

// A listening socket on exactly `ep` (SO_REUSEADDR, so a quick restart of a server works).
Expected<UniqueFd> listen_on(const Endpoint& ep);
// Waits up to `timeout_ms` (-1: for ever, but wakes every 200 ms to call `keep_waiting`,
// which may stop the wait by returning false: EINTR). Returns the connected socket
// (blocking, TCP_NODELAY) and the peer's address in `peer`.
Expected<UniqueFd> accept_one(int listen_fd, int timeout_ms, std::string& peer, bool (*keep_waiting)() = nullptr);
Expected<UniqueFd> connect_to(const Endpoint& ep, int timeout_ms);

// All of `iov`, or an error once `timeout_ms` passes without progress (ETIMEDOUT) or the
// peer is gone (EPIPE, ECONNRESET). `iov` is consumed.
Status write_full(int fd, std::span<iovec> iov, int timeout_ms);
// Exactly `len` bytes. A clean end of stream before them is ECONNRESET with "closed".
Status read_full(int fd, void* buf, size_t len, int timeout_ms);

std::string describe_sockaddr(const sockaddr* sa, socklen_t len);

}  // namespace criu
