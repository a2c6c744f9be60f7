// The other side of the write-back: where dirty chunks go. The network transport to a
// destination host implements this too (built separately); CacheRemote
// (cache_remote.h) is the in-process implementation backed by another cache
// directory, used by tests and for a local second copy.
#pragma once

#include <span>
#include <vector>

#include "criu/core/error.h"
#include "migrate/cache/chunk_key.h"
#include "migrate/cache/chunk_record.h"

namespace criu {

class ChunkRemote {
public:
    virtual ~ChunkRemote() = default;

    // Which of `keys` the remote already holds durably, one answer per key, in order.
    // Asked before every send, in batches, so that a chunk the other side has (from an
    // earlier iteration, another process, another cache) never crosses the wire again.
    virtual Expected<std::vector<bool>> have(std::span<const ChunkKey> keys) = 0;

    // Hands over chunks in their stored form (already compressed). Returns once the
    // remote holds all of them durably: the cache then marks them clean and may evict
    // them, so an early acknowledgement would lose data. The remote must check each
    // chunk against its key before it trusts it.
    virtual Status put(std::span<const StoredChunk> chunks) = 0;

    // Both calls run on the cache's writer thread (or a writethrough put's thread);
    // ChunkCache::close() waits for a call in progress, so a network implementation
    // must time out rather than block for ever.
};

}  // namespace criu
