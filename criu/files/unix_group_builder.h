// The restore half of unix sockets (kind_unix.cc holds the dump half and the validation):
// the sockets that must be created together (a pair, a listener with its accepted and queued
// connections, a datagram socket with the senders of its queued datagrams) are created at once
// when the first of them is opened.
#pragma once

#include <cstdint>
#include <string>

#include "criu/core/error.h"
#include "criu/files/fd_kind_table.h"
#include "proto/files.pb.h"

namespace criu {

namespace unix_sk {

// sock_diag states of a unix socket (the TCP numbers).
constexpr int kStateConnected = 1;    // TCP_ESTABLISHED
constexpr int kStateUnconnected = 7;  // TCP_CLOSE
constexpr int kStateListen = 10;      // TCP_LISTEN

// "unix socket ino 70757": how every message names a socket of an image.
std::string sk_name(const images::UnixSocket& u);
// A socket name for messages: abstract names as "@name".
std::string printable(const std::string& name);

}  // namespace unix_sk

// Creates every socket of group `group` (the unix entries of c.files whose group_ino, or ino
// when it has none, is `group`) and keeps them in c.sockets by dump-time inode.
Status build_unix_group(KindRestoreContext& c, uint64_t group);

}  // namespace criu
