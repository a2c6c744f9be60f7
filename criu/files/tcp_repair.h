// Established TCP connections in repair mode (TCP_REPAIR, tcp(7); KERNEL-NOTES section 6): what
// is read from a socket to take its connection over, and how a new socket takes it over.
// Neither half sends anything to the peer while repair is on; both expect the connection to be
// blocked by the network lock (net_lock.h) from before the first call until after the last.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>

#include "criu/core/error.h"
#include "proto/files.pb.h"

namespace criu {

// TCP_REPAIR on (1), off (0). Turning it off resets SO_REUSEADDR (the kernel's sk_reuse), which
// the caller puts back.
// A sockaddr_in or sockaddr_in6 for an address as the images hold it (4 or 16 bytes, network
// order) and a port in host order.
std::pair<sockaddr_storage, socklen_t> to_sockaddr(int family, const std::string& ip, uint32_t port);

Status tcp_set_repair(int fd, int mode);

// Reads the connection of `fd`, which must be ESTABLISHED and in repair mode: sequence numbers,
// both queues (peeked, left in place), window, negotiated options, timestamp, buffer sizes.
// `where` prefixes every message ("pid 4211 fd 7: TCP connection a -> b").
Status tcp_repair_dump(int fd, images::TcpRepair& out, const std::string& where);

// Hostile-image checks of a TcpRepair record.
Status tcp_repair_validate(const images::TcpRepair& r);

// Makes the fresh TCP socket `fd` (not bound, nothing set but IPV6_V6ONLY) the dumped
// connection: repair on, bind to `local`, sequence numbers, connect without a SYN, options,
// both queues, window, repair off, then the never-sent tail of the send queue. The socket is
// ESTABLISHED afterwards, with SO_REUSEADDR off (the caller sets the dumped options).
Status tcp_repair_restore(int fd, const images::InetSocket& s, const std::string& where);

}  // namespace criu
