// A snapshot manifest: a named list of chunk keys that must stay in the cache until
// the snapshot is released. snapshots/<name>.snap, replaced atomically like the
// checkpoint, and only written once the chunks it names are durable (see
// ChunkCache::pin_snapshot), so a manifest never names a chunk a crash could lose.
//
//   u32 magic "CCSN" | u32 version | name (u32 length + bytes) | u64 count | keys
//   | u32 crc32c of everything before it
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "migrate/cache/chunk_key.h"

namespace criu {

struct SnapshotManifest {
    static constexpr const char* kDir = "snapshots";
    static constexpr size_t kMaxNameBytes = 200;

    std::string name;
    std::vector<ChunkKey> keys;  // distinct, zero-chunk keys left out

    // Names become file names: letters, digits, '.', '_', '-', not starting with '.'.
    static Status check_name(std::string_view name);
    static std::string file_name(std::string_view name) { return std::string(name) + ".snap"; }

    std::vector<uint8_t> encode() const;
    static Expected<SnapshotManifest> decode(std::span<const uint8_t> bytes);

    // `snapdir` is the open snapshots/ directory.
    Status write(int snapdir) const;
    static Expected<SnapshotManifest> read(int snapdir, const std::string& file);
    static Status remove(int snapdir, std::string_view name);
    // Manifest file names in the directory; leftover temp files are reported in `stale`.
    static Expected<std::vector<std::string>> list(int snapdir, std::vector<std::string>* stale = nullptr);
};

}  // namespace criu
