// A ChunkRemote backed by another ChunkCache (usually standalone, in another
// directory): the receiving side's store without a network in between. Tests use it to
// watch write-back, dedup against the remote and writethrough; it also serves as a
// local second copy.
#pragma once

#include <atomic>
#include <memory>

#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/chunk_remote.h"

namespace criu {

class CacheRemote : public ChunkRemote {
public:
    // `store` must outlive this object.
    explicit CacheRemote(ChunkCache& store) : store_(store) {}

    Expected<std::vector<bool>> have(std::span<const ChunkKey> keys) override;
    // Each chunk is checked against its key (ChunkCache::put_stored), then the store
    // commits: the acknowledgement means durable, as the ChunkRemote contract asks.
    Status put(std::span<const StoredChunk> chunks) override;

    // What crossed this "wire".
    struct Traffic {
        uint64_t have_calls = 0;
        uint64_t keys_asked = 0;
        uint64_t put_calls = 0;
        uint64_t chunks_received = 0;
        uint64_t bytes_received = 0;  // stored bytes
    };
    Traffic traffic() const;

private:
    ChunkCache& store_;
    std::atomic<uint64_t> have_calls_{0}, keys_asked_{0}, put_calls_{0}, chunks_{0}, bytes_{0};
};

}  // namespace criu
