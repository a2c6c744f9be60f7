// The index checkpoint: the whole index and the counters in one file, index.ckpt,
// replaced atomically (write to a temp file, fsync, rename, fsync the directory). It
// names the journal generation that continues it.
//
//   u32 magic "CCIX" | u32 version | u64 generation | u32 next segment id | u8 policy
//   | u64 cache size | u64 segment size | u64 next seq | counters | u64 entry count
//   | entries | u32 crc32c of everything before it
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "criu/core/error.h"
#include "migrate/cache/cache_stats.h"
#include "migrate/cache/index_journal.h"

namespace criu {

struct IndexCheckpoint {
    static constexpr const char* kFileName = "index.ckpt";

    uint64_t generation = 0;
    uint32_t next_segment = 1;
    EvictionPolicy policy = EvictionPolicy::lru;
    uint64_t cache_size = 0;
    uint64_t segment_bytes = 0;
    uint64_t next_seq = 1;
    CacheCounters counters;
    std::vector<IndexEntry> entries;

    std::vector<uint8_t> encode() const;
    static Expected<IndexCheckpoint> decode(std::span<const uint8_t> bytes);

    // Durable on return; a crash meanwhile leaves the previous checkpoint.
    Status write(int dirfd) const;
    // nullopt when there is none (a new cache).
    static Expected<std::optional<IndexCheckpoint>> read(int dirfd);
};

}  // namespace criu
