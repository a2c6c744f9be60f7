// ChunkCache, part 6 of 6: puts.
//
// A put has three costs on this machine: the key (BLAKE2b, ~0.1 ms per 64 KiB), the
// compression (zstd -1, about the same), and the write (a 64 KiB O_DIRECT write waits
// ~0.19 ms, mostly per-request latency). put_batch() spreads the first two over both
// cores and turns the third into one write per segment for the whole batch.
//
// Two threads storing the same new content at the same moment both write a record;
// the second to reach the index finds the key there and leaves its copy as garbage
// (counted as a hit). Nobody waits for another put, so no put can wait for itself.
#include <sys/uio.h>

#include <algorithm>
#include <atomic>

#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/snapshot_manifest.h"

namespace criu {
namespace {

enum Kind : uint8_t { kZero, kHit, kNew };

}  // namespace

bool ChunkCache::write_hit(const ChunkKey& key, uint32_t raw_size, std::string_view snapshot, bool* dirty) {
    auto it = index_.find(key);
    // A copy found corrupt is no hit: the new one replaces it.
    if (it == index_.end() || it->second.e.corrupt)
        return false;
    counters_.write_hits++;
    counters_.dedup_local_bytes += raw_size;
    touch(it->second);
    pin_pending(snapshot, it->second);
    if (dirty)
        *dirty = it->second.e.dirty;
    return true;
}

void ChunkCache::helper_loop() {
    uint64_t seen = 0;
    std::unique_lock lk(pool_mu_);
    for (;;) {
        pool_cv_.wait(lk, [&] { return pool_stop_ || pool_gen_ != seen; });
        if (pool_stop_)
            return;
        seen = pool_gen_;
        const std::function<void()>* job = pool_job_;
        lk.unlock();
        (*job)();
        lk.lock();
        if (--pool_running_ == 0)
            pool_cv_.notify_all();
    }
}

void ChunkCache::run_on_helpers(const std::function<void()>& job) {
    bool shared = false;
    {
        std::lock_guard lk(pool_mu_);
        // One batch at a time owns the helpers; a concurrent batch (whose caller is a
        // second thread already) works alone.
        if (!helpers_.empty() && !pool_busy_) {
            shared = true;
            pool_busy_ = true;
            pool_job_ = &job;
            pool_running_ = helpers_.size();
            pool_gen_++;
            pool_cv_.notify_all();
        }
    }
    job();
    if (!shared)
        return;
    std::unique_lock lk(pool_mu_);
    pool_cv_.wait(lk, [&] { return pool_running_ == 0; });
    pool_job_ = nullptr;
    pool_busy_ = false;
}

Expected<ChunkKey> ChunkCache::put(std::span<const uint8_t> data, std::string_view snapshot) {
    std::span<const uint8_t> one[1] = {data};
    std::vector<ChunkKey> keys = TRY(put_batch(one, snapshot));
    return keys[0];
}

Expected<std::vector<ChunkKey>> ChunkCache::put_batch(std::span<const std::span<const uint8_t>> chunks,
                                                      std::string_view snapshot) {
    TRY_VOID(check_writable());
    for (size_t i = 0; i < chunks.size(); i++)
        if (chunks[i].empty() || chunks[i].size() > kMaxChunkBytes)
            return failf(EINVAL, "chunk of {} bytes: must be 1 to {}", chunks[i].size(), kMaxChunkBytes);
    if (!snapshot.empty())
        TRY_VOID(SnapshotManifest::check_name(snapshot));
    size_t n = chunks.size();
    std::vector<ChunkKey> keys(n);
    std::vector<uint8_t> kind(n, kNew), dirty_hit(n, 0);
    std::vector<RecordHeader> hdr(n);
    // Record buffers are reused from batch to batch by the calling thread; helper
    // threads fill the elements, never the vector itself.
    // (A lambda does not capture a thread_local: the helpers go through this reference.)
    thread_local std::vector<AlignedBuffer> tl_bufs;
    std::vector<AlignedBuffer>& bufs = tl_bufs;
    if (bufs.size() < n)
        bufs.resize(n);

    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i; (i = next++) < n;) {
            std::span<const uint8_t> d = chunks[i];
            uint32_t size = static_cast<uint32_t>(d.size());
            bool zero = size % kCachePageSize == 0 && is_all_zero(d);
            keys[i] = zero ? *ZeroKeys::instance().key_of(size) : hash_chunk(d);
            {
                std::lock_guard lk(mu_);
                counters_.writes++;
                counters_.raw_bytes_in += size;
                if (zero) {
                    counters_.zero_chunks++;
                    counters_.zero_bytes += size;
                    kind[i] = kZero;
                    continue;
                }
                bool dirty = false;
                if (write_hit(keys[i], size, snapshot, &dirty)) {
                    kind[i] = kHit;
                    dirty_hit[i] = dirty;
                    continue;
                }
            }
            hdr[i] = encode_record(keys[i], d, opts_.zstd_level, bufs[i]);
        }
    };
    if (n > 1)
        run_on_helpers(work);
    else
        work();

    std::vector<NewRecord> fresh;
    for (size_t i = 0; i < n; i++)
        if (kind[i] == kNew)
            fresh.push_back(NewRecord{keys[i], hdr[i], &bufs[i]});
    TRY_VOID(store_records(fresh, snapshot));
    if (opts_.mode == CacheMode::writethrough) {
        std::vector<ChunkKey> through;
        for (size_t i = 0; i < n; i++)
            if (kind[i] == kNew || (kind[i] == kHit && dirty_hit[i]))
                through.push_back(keys[i]);
        TRY_VOID(write_through(through));
    }
    return keys;
}

Status ChunkCache::put_stored(const StoredChunk& chunk) {
    TRY_VOID(check_writable());
    if (chunk.raw_size == 0 || chunk.raw_size > kMaxChunkBytes || chunk.bytes.empty())
        return failf(EINVAL, "chunk {}: raw size {} out of range", chunk.key.short_hex(), chunk.raw_size);
    thread_local AlignedBuffer rec;
    RecordHeader h = encode_stored_record(chunk, rec);
    // The sender's key is trusted for deduplication from now on: check it.
    auto raw = decode_stored(h, std::span<const uint8_t>(rec.data() + kRecordHeaderBytes, h.stored_size));
    if (!raw)
        return failf(EINVAL, "chunk {} received: {}", chunk.key.short_hex(), raw.error().str());
    if (hash_chunk(*raw) != chunk.key)
        return failf(EINVAL, "chunk {} received: its content does not match its key", chunk.key.short_hex());
    bool hit = false, dirty = false;
    {
        std::lock_guard lk(mu_);
        counters_.writes++;
        counters_.raw_bytes_in += chunk.raw_size;
        if (ZeroKeys::instance().size_of(chunk.key)) {
            counters_.zero_chunks++;
            counters_.zero_bytes += chunk.raw_size;
            return {};
        }
        hit = write_hit(chunk.key, chunk.raw_size, {}, &dirty);
    }
    if (!hit) {
        NewRecord one{chunk.key, h, &rec};
        TRY_VOID(store_records(std::span<const NewRecord>(&one, 1), {}));
    }
    if (opts_.mode == CacheMode::writethrough && (!hit || dirty))
        TRY_VOID(write_through(std::span<const ChunkKey>(&chunk.key, 1)));
    return {};
}

Status ChunkCache::store_records(std::span<const NewRecord> items, std::string_view snapshot) {
    std::unique_lock lk(mu_);
    size_t pos = 0;
    while (pos < items.size()) {
        // 1. Room for as many records as possible. Holding reservations, this thread
        //    must not wait for writes to land (its own among them): it stops, writes and
        //    indexes what it has, and comes back for the rest.
        std::vector<Reservation> res;
        Status err;
        for (size_t i = pos; i < items.size(); i++) {
            auto r = reserve(lk, items[i].rec->size(), res.empty());
            if (!r) {
                if (!(r.error().err() == EAGAIN && !res.empty()))
                    err = with_context(Status(std::unexpected(std::move(r.error()))),
                                       fmt::format("store chunk {}", items[i].key.short_hex()));
                break;
            }
            res.push_back(std::move(*r));
        }

        // 2. One write per run of records that lie back to back in one segment.
        lk.unlock();
        std::vector<Status> written(res.size());
        for (size_t j = 0; j < res.size();) {
            size_t k = j + 1;
            uint64_t end = res[j].offset + items[pos + j].rec->size();
            while (k < res.size() && res[k].file == res[j].file && res[k].offset == end)
                end += items[pos + k++].rec->size();
            std::vector<struct iovec> iov;
            for (size_t x = j; x < k; x++) {
                const AlignedBuffer* b = items[pos + x].rec;
                iov.push_back({const_cast<uint8_t*>(b->data()), b->size()});
            }
            Status st = res[j].file->write_at(res[j].offset, iov);
            for (size_t x = j; x < k; x++)
                written[x] = st;
            j = k;
        }
        lk.lock();

        // 3. Index what landed, all index records in one append.
        std::vector<JournalRecord> adds;
        std::vector<size_t> added, dups;
        std::unordered_set<ChunkKey, ChunkKeyHash> seen;
        for (size_t j = 0; j < res.size(); j++) {
            const NewRecord& it = items[pos + j];
            finish_write(res[j].file->id());
            pending_bytes_ -= it.rec->size();
            if (!written[j]) {
                // Its space stays behind as garbage; the chunks after it still count.
                if (err)
                    err = with_context(std::move(written[j]), fmt::format("store chunk {}", it.key.short_hex()));
                continue;
            }
            if (seen.contains(it.key)) {
                dups.push_back(j);  // the same content twice in this batch
                continue;
            }
            auto ex = index_.find(it.key);
            if (ex != index_.end() && !ex->second.e.corrupt) {
                write_hit(it.key, it.h.raw_size, snapshot, nullptr);  // another thread was first
                continue;
            }
            IndexEntry e;
            e.key = it.key;
            e.segment = res[j].file->id();
            e.offset = res[j].offset;
            e.stored_size = it.h.stored_size;
            e.raw_size = it.h.raw_size;
            // Replacing a copy found corrupt: same content, same state.
            e.dirty = ex != index_.end() ? ex->second.e.dirty : opts_.mode != CacheMode::standalone;
            e.seq = next_seq_++;
            JournalRecord r;
            r.op = JournalOp::add;
            r.entry = e;
            adds.push_back(r);
            added.push_back(j);
            seen.insert(it.key);
        }
        if (!adds.empty()) {
            // On failure the records just written are unreferenced garbage.
            Status js = journal_append(adds);
            if (!js) {
                if (err)
                    err = with_context(std::move(js), fmt::format("index {} new chunks", adds.size()));
                adds.clear();
                added.clear();
                dups.clear();
            }
        }
        for (size_t a = 0; a < adds.size(); a++) {
            const IndexEntry& e = adds[a].entry;
            auto ex = index_.find(e.key);
            if (ex != index_.end()) {  // replacing a corrupt copy: keep its pins
                account_remove(ex->second);
                if (ex->second.in_evictable)
                    evictable_.erase(ex->second.e.seq);
                ex->second.in_evictable = false;
            } else {
                ex = index_.emplace(e.key, Entry{}).first;
            }
            Entry& en = ex->second;
            en.e = e;
            account_add(en);
            counters_.write_misses++;
            counters_.stored_bytes_written += record_bytes(e.stored_size);
            since_commit_ += record_bytes(e.stored_size);
            pin_pending(snapshot, en);
            update_evictable(en);
            // Writethrough puts write their own chunks through before returning; the
            // writer thread only gets what they leave behind after a failure.
            if (e.dirty && opts_.mode == CacheMode::writeback)
                dirty_queue_.push_back(e.key);
        }
        for (size_t j : dups)
            write_hit(items[pos + j].key, items[pos + j].h.raw_size, snapshot, nullptr);
        if (!adds.empty())
            cv_.notify_all();
        if (!err)
            return err;
        pos += res.size();
    }
    if (since_commit_ >= opts_.commit_bytes)
        TRY_VOID_CTX(commit_locked(), "commit after {} MiB", opts_.commit_bytes >> 20);
    return {};
}

}  // namespace criu
