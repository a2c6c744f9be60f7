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
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

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

    // Makes sure this destination holds every key (zero keys aside) before pages name
    // them. A chunk that is clean in the local cache was acknowledged by *a* remote, maybe
    // another host or a destination cache since wiped: keys not confirmed on this channel
    // (answered "have" or acknowledged) are asked for, and the missing ones sent from
    // `cache`. Returns once all are acknowledged.
    Status ensure(ChunkCache& cache, std::span<const ChunkKey> keys);

    uint64_t chunks_sent() const { return chunks_sent_; }
    uint64_t stored_bytes_sent() const { return stored_sent_; }
    uint64_t raw_bytes_sent() const { return raw_sent_; }

private:
    void confirm(std::span<const ChunkKey> keys);
    Channel& ch_;
    std::atomic<uint64_t> chunks_sent_{0}, stored_sent_{0}, raw_sent_{0};
    std::mutex confirmed_mu_;
    std::unordered_set<ChunkKey, ChunkKeyHash> confirmed_;  // held by this destination
};

// Pages by content key: every add_pages becomes 64 KiB chunks put into the local cache
// and one chunk_pages message naming them. The cache's remote must be a NetChunkRemote on
// the same channel.
//   writethrough: the put returns once the destination holds the chunks; chunk_pages
//     goes at once.
//   writeback: the put returns once the chunks are on the local SSD; the cache's writer
//     streams them meanwhile. The page messages (chunk_pages, pages_zero, pages_parent:
//     32 bytes of key per 64 KiB) wait here, in order, and go at finish() once the cache
//     has flushed: the destination builds its page images from chunks it must already
//     hold. So an image set ends with the write-back's backlog, not with every batch.
class CachedPageSink : public PageSink {
public:
    static Expected<std::unique_ptr<PageSink>> open(Channel& ch, ChunkCache& cache, int64_t id,
                                                    const PageWriterOptions& opts);
    CachedPageSink(Channel& ch, ChunkCache& cache, NetChunkRemote& remote, int64_t id)
        : ch_(ch), cache_(cache), remote_(remote), id_(id), defer_(cache.mode() == CacheMode::writeback) {}

    Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false) override;
    Status add_zero(uint64_t vaddr, size_t nr_pages) override;
    Status add_parent(uint64_t vaddr, size_t nr_pages) override;
    Status finish(bool sync = false) override;
    PageWriterStats stats() const override { return st_; }

private:
    Status send_or_defer(MsgType type, std::vector<uint8_t> payload);
    Channel& ch_;
    ChunkCache& cache_;
    NetChunkRemote& remote_;
    int64_t id_;
    bool defer_;
    PageWriterStats st_;
    bool finished_ = false;
    std::vector<std::pair<MsgType, std::vector<uint8_t>>> deferred_;  // writeback: sent at finish()
    std::vector<ChunkKey> deferred_keys_;
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

inline constexpr bool is_chunk_message(MsgType t) {
    return t == MsgType::chunk_have || t == MsgType::chunk_put || t == MsgType::chunk_pages;
}

inline constexpr uint32_t kChunkPages = 16;  // 64 KiB chunks: the cache's recommended size

}  // namespace criu
