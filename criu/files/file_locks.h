// File locks (--file-locks): POSIX (fcntl F_SETLK), OFD (F_OFD_SETLK) and flock locks, read
// from the "lock:" lines of /proc/PID/fdinfo/FD (fs/locks.c show_fd_locks: the locks whose
// owner is this fd's description, or for POSIX locks the process's fd table) and taken again
// by the restored process on the same fd.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "proto/files.pb.h"

namespace criu {

// One "lock:" value of fdinfo, e.g. "1: POSIX  ADVISORY  WRITE 32231 fe:00:10953469 5 14".
// Leases, delegations and anything else that is not a held POSIX/OFD/flock lock fail with
// ENOTSUP naming it.
Expected<images::FileLock> parse_lock_line(std::string_view value);
// Every "lock:" line of an fdinfo text.
Expected<std::vector<images::FileLock>> parse_fdinfo_locks(std::string_view fdinfo);
// "POSIX write lock on bytes 5-14", "flock read lock on the whole file"; with a path: "POSIX
// write lock on bytes 5-14 of /tmp/x", "flock read lock on /tmp/x". For messages.
std::string describe_lock(const images::FileLock& l, const std::string& path = {});
// Hostile-image checks.
Status validate_lock(const images::FileLock& l);
// Takes the lock again on `fd` in the calling process, without waiting: a lock somebody
// else holds now fails with EAGAIN.
Status apply_lock(int fd, const images::FileLock& l);

}  // namespace criu
