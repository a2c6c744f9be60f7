#include "migrate/net/remote_chunks.h"

#include <algorithm>

#include "migrate/cache/byte_io.h"

namespace criu {

namespace {
constexpr uint64_t kPage = 4096;
constexpr size_t kMaxKeysPerMessage = 16384;
constexpr size_t kChunkHeadBytes = kChunkKeyBytes + 2 + 4 + 4;
}  // namespace

// ---- source ------------------------------------------------------------------------

Expected<std::vector<bool>> NetChunkRemote::have(std::span<const ChunkKey> keys) {
    std::vector<bool> out;
    out.reserve(keys.size());
    std::lock_guard lk(ch_.mutex());
    for (size_t at = 0; at < keys.size(); at += kMaxKeysPerMessage) {
        size_t n = std::min(kMaxKeysPerMessage, keys.size() - at);
        ByteWriter w;
        w.u32(static_cast<uint32_t>(n));
        for (size_t i = 0; i < n; ++i)
            w.key(keys[at + i]);
        TRY_VOID(ch_.send(MsgType::chunk_have, w.bytes()));
        Message m = TRY(ch_.expect(MsgType::chunk_have_reply));
        ByteReader r(m.payload);
        uint32_t got = 0;
        if (!r.u32(got) || got != n || r.left() != n)
            return failf(EBADMSG, "{}: chunk_have_reply answers {} of {} keys", ch_.peer(), got, n);
        for (size_t i = 0; i < n; ++i)
            out.push_back(m.payload[r.pos() + i] != 0);
    }
    std::vector<ChunkKey> yes;
    for (size_t i = 0; i < keys.size(); ++i)
        if (out[i])
            yes.push_back(keys[i]);
    confirm(yes);
    return out;
}

void NetChunkRemote::confirm(std::span<const ChunkKey> keys) {
    std::lock_guard lk(confirmed_mu_);
    confirmed_.insert(keys.begin(), keys.end());
}

Status NetChunkRemote::ensure(ChunkCache& cache, std::span<const ChunkKey> keys) {
    const ZeroKeys& zeros = ZeroKeys::instance();
    std::vector<ChunkKey> ask;
    {
        std::lock_guard lk(confirmed_mu_);
        std::unordered_set<ChunkKey, ChunkKeyHash> seen;
        for (const ChunkKey& k : keys)
            if (!zeros.size_of(k) && !confirmed_.contains(k) && seen.insert(k).second)
                ask.push_back(k);
    }
    if (ask.empty())
        return {};
    std::vector<bool> had = TRY_CTX(have(ask), "ask {} which chunks it has", ch_.peer());
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<StoredChunk> send;
    bufs.reserve(ask.size());
    for (size_t i = 0; i < ask.size(); ++i) {
        if (had[i])
            continue;
        RecordHeader h;
        bufs.push_back(TRY_CTX(cache.get_stored(ask[i], &h), "chunk {} for {}", ask[i].short_hex(), ch_.peer()));
        send.push_back(StoredChunk{h.key, h.codec, h.raw_size, bufs.back()});
    }
    if (!send.empty())
        TRY_VOID_CTX(put(send), "send {} chunks the destination lacks", send.size());
    return {};
}

Status NetChunkRemote::put(std::span<const StoredChunk> chunks) {
    std::lock_guard lk(ch_.mutex());
    size_t at = 0;
    while (at < chunks.size()) {
        // As many chunks as fit in one message.
        size_t n = 0, bytes = 4;
        while (at + n < chunks.size() && bytes + kChunkHeadBytes + chunks[at + n].bytes.size() <= kMaxPayload) {
            bytes += kChunkHeadBytes + chunks[at + n].bytes.size();
            ++n;
        }
        if (n == 0)
            return failf(EMSGSIZE, "chunk {} of {} stored bytes does not fit a message", chunks[at].key.short_hex(),
                         chunks[at].bytes.size());
        ByteWriter w;
        w.u32(static_cast<uint32_t>(n));
        for (size_t i = 0; i < n; ++i) {
            const StoredChunk& c = chunks[at + i];
            w.key(c.key);
            w.u16(static_cast<uint16_t>(c.codec));
            w.u32(c.raw_size);
            w.u32(static_cast<uint32_t>(c.bytes.size()));
        }
        for (size_t i = 0; i < n; ++i)
            w.raw(chunks[at + i].bytes.data(), chunks[at + i].bytes.size());
        TRY_VOID(ch_.send(MsgType::chunk_put, w.bytes()));
        Message m = TRY(ch_.expect(MsgType::chunk_put_ack));
        ByteReader r(m.payload);
        uint32_t acked = 0;
        if (!r.u32(acked) || acked != n || r.left())
            return failf(EBADMSG, "{}: chunk_put_ack for {} of {} chunks", ch_.peer(), acked, n);
        std::vector<ChunkKey> done_keys;
        for (size_t i = 0; i < n; ++i) {
            chunks_sent_++;
            stored_sent_ += chunks[at + i].bytes.size();
            raw_sent_ += chunks[at + i].raw_size;
            done_keys.push_back(chunks[at + i].key);
        }
        confirm(done_keys);
        at += n;
    }
    return {};
}

Expected<std::unique_ptr<PageSink>> CachedPageSink::open(Channel& ch, ChunkCache& cache, int64_t id,
                                                         const PageWriterOptions& opts) {
    ByteWriter w;
    w.u64(static_cast<uint64_t>(id));
    w.u8(static_cast<uint8_t>(opts.codec));
    auto* remote = dynamic_cast<NetChunkRemote*>(cache.remote());
    if (!remote)
        return failf(EINVAL, "pages of {}: the cache {} does not write to {}", id, cache.dir(), ch.peer());
    std::lock_guard lk(ch.mutex());
    TRY_VOID_CTX(ch.send(MsgType::pages_open, w.bytes()), "sending the pages of {} to {}", id, ch.peer());
    return std::unique_ptr<PageSink>(std::make_unique<CachedPageSink>(ch, cache, *remote, id));
}

Status CachedPageSink::send_or_defer(MsgType type, std::vector<uint8_t> payload) {
    if (defer_) {
        deferred_.emplace_back(type, std::move(payload));
        return {};
    }
    std::lock_guard lk(ch_.mutex());
    return ch_.send(type, payload);
}

Status CachedPageSink::add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool) {
    const auto* p = static_cast<const uint8_t*>(data);
    std::vector<std::span<const uint8_t>> chunks;
    for (size_t i = 0; i < nr_pages; i += kChunkPages) {
        size_t n = std::min<size_t>(kChunkPages, nr_pages - i);
        chunks.emplace_back(p + i * kPage, n * kPage);
    }
    // Writethrough: returns once the destination holds every new or dirty chunk (or had
    // it already). Writeback: once they are on the local SSD.
    std::vector<ChunkKey> keys = TRY_CTX(cache_.put_batch(chunks), "pages of {} at {:#x} into the cache", id_, vaddr);
    ByteWriter w;
    w.u64(vaddr);
    w.u32(static_cast<uint32_t>(nr_pages));
    w.u32(static_cast<uint32_t>(keys.size()));
    for (const ChunkKey& k : keys)
        w.key(k);
    if (defer_) {
        deferred_keys_.insert(deferred_keys_.end(), keys.begin(), keys.end());
    } else {
        // Clean hits were acknowledged by some remote, not necessarily by this one.
        TRY_VOID_CTX(remote_.ensure(cache_, keys), "pages of {} at {:#x}", id_, vaddr);
    }
    TRY_VOID(send_or_defer(MsgType::chunk_pages, std::move(w.bytes())));
    st_.pages_present += nr_pages;
    st_.bytes_in += nr_pages * kPage;
    return {};
}

Status CachedPageSink::add_zero(uint64_t vaddr, size_t nr_pages) {
    ByteWriter w;
    w.u64(vaddr);
    w.u32(static_cast<uint32_t>(nr_pages));
    st_.pages_zero += nr_pages;
    return send_or_defer(MsgType::pages_zero, std::move(w.bytes()));
}

Status CachedPageSink::add_parent(uint64_t vaddr, size_t nr_pages) {
    ByteWriter w;
    w.u64(vaddr);
    w.u32(static_cast<uint32_t>(nr_pages));
    st_.pages_parent += nr_pages;
    return send_or_defer(MsgType::pages_parent, std::move(w.bytes()));
}

Status CachedPageSink::finish(bool) {
    if (finished_)
        return failf(EINVAL, "pages of {}: finish called twice", id_);
    finished_ = true;
    if (defer_) {
        // Every chunk the pages name must be on the destination before they go: wait for
        // the writer's backlog, then make sure of the clean hits (ensure()).
        TRY_VOID_CTX(cache_.flush(), "pages of {}: write-back to {}", id_, ch_.peer());
        TRY_VOID_CTX(remote_.ensure(cache_, deferred_keys_), "pages of {}", id_);
        deferred_keys_.clear();
    }
    std::lock_guard lk(ch_.mutex());
    for (const auto& [type, payload] : deferred_)
        TRY_VOID(ch_.send(type, payload));
    deferred_.clear();
    TRY_VOID(ch_.send(MsgType::pages_close, {}));
    Message m = TRY_CTX(ch_.expect(MsgType::pages_done), "pages of {} on {}", id_, ch_.peer());
    ByteReader r(m.payload);
    uint64_t pages = 0, stored = 0;
    if (!r.u64(pages) || !r.u64(stored) || r.left() || pages != st_.pages_present)
        return failf(EIO, "{} stored {} pages of {}, {} were sent", ch_.peer(), pages, id_, st_.pages_present);
    st_.bytes_stored = stored;
    return {};
}

// ---- destination -------------------------------------------------------------------

Expected<ChunkCache*> ChunkReceiver::cache() {
    if (!cache_) {
        ChunkCacheOptions o;
        // The final home of these chunks: clean once stored, so eviction may take them
        // (as writeback with no remote they would stay dirty and fill the cache for good).
        o.mode = CacheMode::standalone;
        o.log = &log_;
        cache_ = TRY_CTX(ChunkCache::open(dir_, o), "the destination's chunk cache");
    }
    return cache_.get();
}

Expected<bool> ChunkReceiver::handle(Channel& ch, const Message& m, PageReceiver& pages) {
    ByteReader r(m.payload);
    switch (m.type) {
    case MsgType::chunk_have: {
        uint32_t n = 0;
        if (!r.u32(n) || n > kMaxKeysPerMessage || r.left() != uint64_t(n) * kChunkKeyBytes)
            return fail(EBADMSG, "malformed chunk_have");
        ChunkCache* c = TRY(cache());
        const ZeroKeys& zeros = ZeroKeys::instance();
        ByteWriter w;
        w.u32(n);
        for (uint32_t i = 0; i < n; ++i) {
            ChunkKey k;
            r.key(k);
            auto inf = c->info(k);
            w.u8(zeros.size_of(k).has_value() || (inf && !inf->corrupt) ? 1 : 0);
        }
        TRY_VOID(ch.send(MsgType::chunk_have_reply, w.bytes()));
        return true;
    }
    case MsgType::chunk_put: {
        uint32_t n = 0;
        if (!r.u32(n) || n == 0 || n > kMaxPayload / kChunkHeadBytes)
            return fail(EBADMSG, "malformed chunk_put");
        std::vector<StoredChunk> in(n);
        std::vector<uint32_t> sizes(n);
        uint64_t total = 0;
        for (uint32_t i = 0; i < n; ++i) {
            StoredChunk& c = in[i];
            uint16_t codec = 0;
            uint32_t stored = 0;
            if (!r.key(c.key) || !r.u16(codec) || !r.u32(c.raw_size) || !r.u32(stored) || codec > 1 ||
                c.raw_size == 0 || c.raw_size > kMaxChunkBytes || stored > kMaxChunkBytes)
                return fail(EBADMSG, "malformed chunk_put entry");
            c.codec = static_cast<ChunkCodec>(codec);
            sizes[i] = stored;
            total += stored;
        }
        if (r.left() != total)
            return failf(EBADMSG, "chunk_put announces {} bytes and carries {}", total, r.left());
        size_t off = r.pos();
        for (uint32_t i = 0; i < n; ++i) {
            in[i].bytes = {m.payload.data() + off, sizes[i]};
            off += sizes[i];
        }
        ChunkCache* cc = TRY(cache());
        for (const auto& c : in)
            TRY_VOID_CTX(cc->put_stored(c), "chunk {} from {}", c.key.short_hex(), ch.peer());
        TRY_VOID(cc->commit());
        received_ += n;
        ByteWriter w;
        w.u32(n);
        TRY_VOID(ch.send(MsgType::chunk_put_ack, w.bytes()));
        return true;
    }
    case MsgType::chunk_pages: {
        uint64_t vaddr = 0;
        uint32_t nr = 0, n = 0;
        if (!r.u64(vaddr) || !r.u32(nr) || !r.u32(n) || nr == 0 || n != (nr + kChunkPages - 1) / kChunkPages ||
            r.left() != uint64_t(n) * kChunkKeyBytes)
            return fail(EBADMSG, "malformed chunk_pages");
        ChunkCache* c = TRY(cache());
        const ZeroKeys& zeros = ZeroKeys::instance();
        std::vector<uint8_t> zero_buf;
        for (uint32_t i = 0; i < n; ++i) {
            ChunkKey k;
            r.key(k);
            uint32_t want = std::min<uint32_t>(kChunkPages, nr - i * kChunkPages);
            uint64_t va = vaddr + uint64_t(i) * kChunkPages * kPage;
            if (auto z = zeros.size_of(k)) {
                if (*z != want * kPage)
                    return failf(EBADMSG, "chunk_pages at {:#x}: zero chunk of {} bytes for {} pages", va, *z, want);
                zero_buf.assign(*z, 0);
                TRY_VOID(pages.add_data(va, zero_buf.data(), want));
                continue;
            }
            std::vector<uint8_t> data = TRY_CTX(c->get(k), "chunk {} for {:#x}", k.short_hex(), va);
            if (data.size() != uint64_t(want) * kPage)
                return failf(EBADMSG, "chunk {} holds {} bytes where {} pages belong", k.short_hex(), data.size(),
                             want);
            TRY_VOID(pages.add_data(va, data.data(), want));
            reused_++;
        }
        return true;
    }
    default:
        return false;
    }
}

}  // namespace criu
