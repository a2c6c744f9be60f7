// The network lock of --tcp-established. While a dumped TCP connection sits in repair mode,
// while its process is gone and until the restored socket has taken it over, every packet of
// that connection is dropped in both directions: the peer retransmits into silence (a pause)
// instead of reaching a socket that would answer with a reset (KERNEL-NOTES section 6).
//
// One nft table (family inet) per dump, named criu_tcp_<pid>_<random>: <pid> is the first dumped
// process that has a connection, so parallel dumps never share a table, and a test can find
// what a dump of its process left. The connections are elements of two sets (IPv4, IPv6) that
// an input and an output chain drop; each connection goes in twice, once per direction, so that
// loopback peers (both directions cross both hooks) and remote peers are covered alike. The
// table name goes into the inventory: restore removes it once the tree runs again; a failed
// restore keeps it (the connections stay paused, nothing is reset) and says how to remove it
// (`criu net-unlock -D DIR`).
//
// The table is made with the nft command (Debian package nftables) fed on its standard input:
// one atomic batch per change.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"

namespace criu {

// One TCP connection as the kernel sees it from the local socket.
struct TcpTuple {
    int family = 0;           // AF_INET or AF_INET6
    std::string local_ip;     // 4 or 16 bytes, network order
    uint32_t local_port = 0;
    std::string peer_ip;
    uint32_t peer_port = 0;
};

// "127.0.0.1:5000 -> 127.0.0.1:40000", "[::1]:5000 -> [::1]:40000".
std::string tuple_str(const TcpTuple& t);

// Runs `nft -f -` with `script` on its standard input; the error carries nft's own message.
Status run_nft(const std::string& script);

// A table name this code makes (criu_tcp_ followed by digits, '_' and hex digits): anything
// else read from an image is refused before it reaches nft.
bool valid_lock_table_name(const std::string& name);

// Removes table `name` (family inet). A table that is not there is no error (removed already).
Status remove_lock_table(const std::string& name, Log& log);

class NetLock {
public:
    NetLock() = default;
    NetLock(const NetLock&) = delete;
    NetLock& operator=(const NetLock&) = delete;
    // Removes the table unless keep() was called.
    ~NetLock();

    // Drops every packet of `t` from now on. The first call creates the table, named after
    // `pid`.
    Status block(const TcpTuple& t, pid_t pid, Log& log);
    // Removes the table (nothing if none was made).
    Status release(Log& log);
    // The table outlives this object (the dumped processes are gone; restore removes it).
    void keep() { kept_ = true; }
    // Empty until the first block().
    const std::string& table() const { return table_; }

private:
    std::string table_;
    bool kept_ = false;
};

}  // namespace criu
