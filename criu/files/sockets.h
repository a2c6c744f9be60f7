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
#include "criu/files/sock_diag.h"
#include "proto/files.pb.h"

namespace criu {

class SocketDumpState {
public:
    struct UnixSeen {
        pid_t pid = 0;
        int fd = -1;
        uint32_t wqueue = 0;  // bytes this socket sent that its peer has not read
    };

    // sock_diag of unix socket `ino`, queried on first use and once more for an inode that
    // was not there yet.
    Expected<const UnixDiag*> unix_info(uint32_t ino);
    void unix_dumped(uint64_t ino, UnixSeen seen) { unix_seen_[ino] = seen; }

    // After every process: checks that every unix peer and queued connection is in the dump
    // (or may stay outside with --ext-unix-sk), and sets group_ino (sockets created together).
    Status finish_unix(std::vector<images::FileEntry>& files, bool ext_unix_sk, Log& log);

private:
    std::optional<std::map<uint32_t, UnixDiag>> unix_diag_;
    std::map<uint64_t, UnixSeen> unix_seen_;
};

}  // namespace criu
