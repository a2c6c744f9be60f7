// NETLINK_SOCK_DIAG queries (sock_diag(7)): what the kernel knows about sockets that a socket
// fd does not say (a unix socket's peer inode, the connections queued in a listener, the
// inode of its socket file). Parsing is separate from the netlink exchange so that it can be
// fed hostile bytes in tests.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "criu/core/error.h"

namespace criu {

struct UnixDiag {
    uint32_t ino = 0;
    uint8_t type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    uint8_t state = 0;  // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
    bool has_name = false;
    std::string name;  // UNIX_DIAG_NAME: sun_path bytes, abstract names start with '\0'
    bool has_vfs = false;
    uint32_t vfs_ino = 0;  // UNIX_DIAG_VFS: the socket file (path names)
    uint32_t vfs_dev = 0;  // the kernel's internal dev_t (major << 20 | minor), not st_dev
    uint32_t peer = 0;     // UNIX_DIAG_PEER, 0 if none
    std::vector<uint32_t> icons;  // UNIX_DIAG_ICONS: embryos queued in a listener, in order
    bool has_rqlen = false;
    uint32_t rqueue = 0;  // listening: queued connections; else bytes queued to read
    uint32_t wqueue = 0;  // listening: backlog; else bytes sent and not read by the peer
    uint8_t shutdown = 0; // UNIX_DIAG_SHUTDOWN: 1 receive, 2 send
};

// One netlink message buffer (a whole recv() of a SOCK_DIAG_BY_FAMILY dump reply) into
// records; `done` is set when NLMSG_DONE is met. A NLMSG_ERROR reply becomes that error;
// anything malformed (lengths past the end, short attributes) is refused, never read past.
Status parse_unix_diag(std::span<const uint8_t> buf, std::vector<UnixDiag>& out, bool& done);

// Every unix socket of criu's network namespace, by inode (UDIAG_SHOW_NAME|VFS|PEER|ICONS|RQLEN).
Expected<std::map<uint32_t, UnixDiag>> collect_unix_diag();

}  // namespace criu
