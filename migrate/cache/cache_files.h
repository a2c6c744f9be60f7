// File helpers shared by the cache's metadata files (checkpoint, journal, manifests).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "criu/core/error.h"

namespace criu {

// fsync on the directory itself: makes creations, renames and unlinks in it durable
// (fsync(2): syncing a file does not sync the directory entry that names it).
Status fsync_dir(int dirfd);

// Replaces `name` atomically: writes `name.tmp`, fsyncs it, renames it over `name`,
// fsyncs the directory. A crash at any point leaves either the old or the new file,
// never a mix; a leftover .tmp is removed by the next open.
Status write_file_atomic(int dirfd, const std::string& name, std::span<const uint8_t> bytes);

// Whole file, or nullopt when it does not exist; refuses files above `max_bytes`
// (every metadata file is untrusted input after a crash or a bad disk).
Expected<std::optional<std::vector<uint8_t>>> read_file_capped(int dirfd, const std::string& name,
                                                               uint64_t max_bytes);

}  // namespace criu
