// What the socket kinds (kind_unix.cc, kind_inet.cc) share during one dump, beyond one fd:
// the sock_diag view of every unix socket (one query per dump), which unix socket inode was
// dumped where (their peers must all be in the dump), and the TCP connections put in repair
// mode behind the network lock. Owned by FilesDumper.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "criu/files/net_lock.h"
#include "criu/files/sock_diag.h"
#include "proto/files.pb.h"

namespace criu {

class SocketDumpState {
public:
    SocketDumpState() = default;
    SocketDumpState(const SocketDumpState&) = delete;
    SocketDumpState& operator=(const SocketDumpState&) = delete;
    // A dump that did not reach tcp_release(): every connection is given back to its process
    // as it was (repair off, SO_REUSEADDR as dumped) before the lock is lifted.
    ~SocketDumpState();

    struct UnixSeen {
        pid_t pid = 0;
        int fd = -1;
        uint32_t wqueue = 0;  // bytes this socket sent that its peer has not read
    };

    // sock_diag of unix socket `ino`, queried on first use and once more for an inode that
    // was not there yet.
    Expected<const UnixDiag*> unix_info(uint32_t ino);
    void unix_dumped(uint64_t ino, UnixSeen seen) { unix_seen_[ino] = seen; }
    // Every unix socket of the last sock_diag query (null before unix_info()): an accepted
    // socket's listener is found by its name.
    const std::map<uint32_t, UnixDiag>* unix_all() const { return unix_diag_ ? &*unix_diag_ : nullptr; }

    // After every process: checks that every unix peer and queued connection is in the dump
    // (or may stay outside with --ext-unix-sk), and sets group_ino (sockets created together).
    Status finish_unix(std::vector<images::FileEntry>& files, bool ext_unix_sk, Log& log);

    // --tcp-established: blocks connection `t` of socket `fd` (a stolen fd of pid `pid`) behind
    // the dump's network lock, then puts the socket in repair mode. `reuseaddr` is its
    // SO_REUSEADDR, which turning repair off again resets.
    Status tcp_repair_on(int fd, const TcpTuple& t, bool reuseaddr, pid_t pid, Log& log);
    // Once the images are complete. `killed`: the dumped processes are gone; their sockets were
    // in repair mode when they closed (nothing was sent to the peers) and the lock stays for
    // restore. Otherwise (--leave-running) repair goes off and the lock is lifted; call it
    // before the processes run again (a socket in repair mode refuses send()).
    Status tcp_release(bool killed, Log& log);
    // The network lock's nft table; empty if no connection was dumped.
    const std::string& tcp_lock_table() const { return lock_.table(); }

private:
    struct Repaired {
        UniqueFd fd;
        bool reuseaddr = false;
        std::string name;  // "pid 4211 fd 7: TCP connection a -> b"
    };
    // Repair off on every connection: the process's view of it is as before.
    Status tcp_repair_off_all();

    std::vector<Repaired> repaired_;
    NetLock lock_;
    bool tcp_released_ = false;
    std::optional<std::map<uint32_t, UnixDiag>> unix_diag_;
    std::map<uint64_t, UnixSeen> unix_seen_;
};

}  // namespace criu
