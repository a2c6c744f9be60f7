// The SSD cache across the network: NetChunkRemote is the ChunkRemote (chunk_remote.h) of
// a source's cache, talking to the destination's ChunkReceiver, which keeps the chunks in
// its own cache and builds the page images from them.
//
//   chunk_have       {u32 n} + n keys              -> chunk_have_reply {u32 n} + n bytes 0/1
//   chunk_put        {u32 n} + n x {key, u16 codec, u32 raw, u32 stored} + the stored bytes
//                                                  -> chunk_put_ack {u32 n} (durable: committed)
//   chunk_pages      {u64 vaddr, u32 nr_pages, u32 n} + n keys: pages [vaddr, +nr) are the
//                    concatenated raw chunks (each a page multiple); no answer
// The receiver checks every chunk against its key before storing it (put_stored), so a
// chunk cannot be smuggled in under someone else's key; a key it lacks in chunk_pages is an
// error, never zeros.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "criu/core/log.h"
#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/chunk_remote.h"
#include "migrate/net/channel.h"
#include "migrate/net/page_transfer.h"

namespace criu {

class NetChunkRemote : public ChunkRemote {
public:
    explicit NetChunkRemote(Channel& ch) : ch_(ch) {}
    Expected<std::vector<bool>> have(std::span<const ChunkKey> keys) override;
    Status put(std::span<const StoredChunk> chunks) override;

    uint64_t chunks_sent() const { return chunks_sent_; }
    uint64_t stored_bytes_sent() const { return stored_sent_; }
    uint64_t raw_bytes_sent() const { return raw_sent_; }

private:
    Channel& ch_;
    std::atomic<uint64_t> chunks_sent_{0}, stored_sent_{0}, raw_sent_{0};
};

// Pages by content key: every add_pages becomes 64 KiB chunks put into the local cache
// (writethrough to the destination, which skips what it has) and one chunk_pages message.
class CachedPageSink : public PageSink {
public:
    static Expected<std::unique_ptr<PageSink>> open(Channel& ch, ChunkCache& cache, int64_t id,
                                                    const PageWriterOptions& opts);
    CachedPageSink(Channel& ch, ChunkCache& cache, int64_t id) : ch_(ch), cache_(cache), id_(id) {}

    Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false) override;
    Status add_zero(uint64_t vaddr, size_t nr_pages) override;
    Status add_parent(uint64_t vaddr, size_t nr_pages) override;
    Status finish(bool sync = false) override;
    PageWriterStats stats() const override { return st_; }

private:
    Channel& ch_;
    ChunkCache& cache_;
    int64_t id_;
    PageWriterStats st_;
    bool finished_ = false;
};

// The destination's side: a ChunkCache in `dir`, opened on first use.
class ChunkReceiver {
public:
    ChunkReceiver(std::string dir, Log& log) : dir_(std::move(dir)), log_(log) {}
    // Handles chunk messages (true); chunk_pages go into `pages`.
    Expected<bool> handle(Channel& ch, const Message& m, PageReceiver& pages);
    uint64_t chunks_received() const { return received_; }
    uint64_t chunks_reused() const { return reused_; }

private:
    Expected<ChunkCache*> cache();
    std::string dir_;
    Log& log_;
    std::unique_ptr<ChunkCache> cache_;
    uint64_t received_ = 0, reused_ = 0;
};

inline constexpr uint32_t kChunkPages = 16;  // 64 KiB chunks: the cache's recommended size

}  // namespace criu
