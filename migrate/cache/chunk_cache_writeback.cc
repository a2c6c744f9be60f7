// ChunkCache, part 4 of 6: write-back to the remote (background writer), writethrough,
// flush.
//
// The writer takes dirty chunks in the order they were stored, in batches: it asks the
// remote which ones it already has (a page repeated across pre-copy iterations, a
// library page shared with another process, a chunk sent before a restart), sends only
// the others in their stored (compressed) form, and marks the whole batch clean once
// the remote has acknowledged it. Only then may eviction take them.
#include <algorithm>
#include <chrono>

#include "migrate/cache/chunk_cache.h"

namespace criu {
namespace {

enum Outcome : uint8_t { kSkipped = 0, kRemoteHad = 1, kSent = 2 };

}  // namespace

Status ChunkCache::write_back(std::span<const ChunkKey> keys, std::vector<uint8_t>& outcome) {
    outcome.assign(keys.size(), kSkipped);
    std::vector<bool> had = TRY_CTX(opts_.remote->have(keys), "ask the remote which chunks it has");
    if (had.size() != keys.size())
        return failf(EPROTO, "the remote answered {} of {} questions", had.size(), keys.size());
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<StoredChunk> send;
    std::vector<size_t> send_index;
    bufs.reserve(keys.size());
    for (size_t i = 0; i < keys.size(); i++) {
        if (had[i]) {
            outcome[i] = kRemoteHad;
            continue;
        }
        Location loc;
        {
            std::lock_guard lk(mu_);
            auto it = index_.find(keys[i]);
            if (it == index_.end() || it->second.e.corrupt)
                continue;
            loc = Location{segments_.at(it->second.e.segment).file, it->second.e};
        }
        RecordHeader h;
        auto stored = read_checked(loc, &h, false);
        if (!stored) {
            // Never send a torn record: the remote would keep it under a trusted key.
            std::lock_guard lk(mu_);
            mark_corrupt(loc, stored.error());
            continue;
        }
        bufs.push_back(std::move(*stored));
        send.push_back(StoredChunk{h.key, h.codec, h.raw_size, bufs.back()});
        send_index.push_back(i);
    }
    if (!send.empty())
        TRY_VOID_CTX(opts_.remote->put(send), "send {} chunks to the remote", send.size());
    for (size_t i : send_index)
        outcome[i] = kSent;
    return mark_clean(keys, outcome);
}

Status ChunkCache::mark_clean(std::span<const ChunkKey> keys, std::span<const uint8_t> outcome) {
    std::lock_guard lk(mu_);
    std::vector<JournalRecord> recs;
    for (size_t i = 0; i < keys.size(); i++) {
        auto it = index_.find(keys[i]);
        if (outcome[i] == kSkipped || it == index_.end() || !it->second.e.dirty)
            continue;
        JournalRecord r;
        r.op = JournalOp::clean;
        r.entry.key = keys[i];
        recs.push_back(r);
    }
    if (recs.empty())
        return {};
    // If this fails the chunks stay dirty: the next attempt finds them on the remote.
    TRY_VOID_CTX(journal_append(recs), "record {} chunks as written back", recs.size());
    for (size_t i = 0; i < keys.size(); i++) {
        auto it = index_.find(keys[i]);
        if (outcome[i] == kSkipped || it == index_.end() || !it->second.e.dirty)
            continue;
        Entry& en = it->second;
        account_remove(en);
        en.e.dirty = false;
        account_add(en);
        update_evictable(en);
        if (outcome[i] == kRemoteHad) {
            counters_.dedup_remote_chunks++;
            counters_.dedup_remote_bytes += en.e.raw_size;
        } else {
            counters_.writebacks++;
            counters_.writeback_bytes += en.e.stored_size;
        }
    }
    cv_.notify_all();
    return {};
}

void ChunkCache::writer_loop() {
    std::unique_lock lk(mu_);
    std::chrono::milliseconds backoff(0);
    std::vector<uint8_t> outcome;
    while (!stop_) {
        std::vector<ChunkKey> batch;
        while (!dirty_queue_.empty() && batch.size() < opts_.writeback_batch) {
            ChunkKey k = dirty_queue_.front();
            dirty_queue_.pop_front();
            auto it = index_.find(k);
            // The queue may hold keys since cleaned, dropped or claimed by a
            // writethrough put: skip those.
            if (it == index_.end() || !it->second.e.dirty || it->second.e.corrupt || it->second.sending)
                continue;
            it->second.sending = true;
            batch.push_back(k);
        }
        if (batch.empty()) {
            cv_.wait(lk);
            continue;
        }
        lk.unlock();
        Status st = write_back(batch, outcome);
        lk.lock();
        for (const auto& k : batch) {
            auto it = index_.find(k);
            if (it == index_.end())
                continue;
            it->second.sending = false;
            if (it->second.e.dirty && !it->second.e.corrupt)
                dirty_queue_.push_back(k);
        }
        cv_.notify_all();
        if (st) {
            backoff = std::chrono::milliseconds(0);
            continue;
        }
        counters_.writeback_errors++;
        last_wb_error_ = st.error().str();
        wb_error_epoch_++;
        cv_.notify_all();
        log_warn("write-back: " + last_wb_error_);
        // Retry with a growing pause: a remote that is down should not be hammered.
        backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(50)), std::chrono::milliseconds(5000));
        cv_.wait_for(lk, backoff, [&] { return stop_; });
    }
}

Status ChunkCache::write_through(std::span<const ChunkKey> keys) {
    std::vector<ChunkKey> left(keys.begin(), keys.end());
    std::sort(left.begin(), left.end());
    left.erase(std::unique(left.begin(), left.end()), left.end());
    while (!left.empty()) {
        // Claim what nobody is sending. A key the writer (or another writethrough put)
        // is sending is waited for, but only while this thread holds no claim of its
        // own: two threads waiting on each other's claims would wait for ever.
        std::vector<ChunkKey> claimed, later;
        {
            std::unique_lock lk(mu_);
            for (;;) {
                for (const auto& k : left) {
                    auto it = index_.find(k);
                    if (it == index_.end())
                        return failf(ENOENT, "writethrough: chunk {} vanished", k.short_hex());
                    if (it->second.e.corrupt)
                        return failf(EIO, "writethrough: chunk {} is corrupt in the cache", k.short_hex());
                    if (!it->second.e.dirty)
                        continue;
                    if (it->second.sending) {
                        later.push_back(k);
                        continue;
                    }
                    it->second.sending = true;
                    claimed.push_back(k);
                }
                if (!claimed.empty() || later.empty())
                    break;
                cv_.wait(lk);  // only others' sends are in the way: their outcome is ours
                later.clear();
            }
        }
        if (claimed.empty())
            return {};
        std::vector<uint8_t> outcome;
        Status st = write_back(claimed, outcome);
        std::lock_guard lk(mu_);
        for (const auto& k : claimed) {
            auto it = index_.find(k);
            if (it == index_.end())
                continue;
            it->second.sending = false;
            if (it->second.e.dirty && !it->second.e.corrupt) {
                dirty_queue_.push_back(k);  // the writer keeps trying in the background
                if (st)
                    st = failf(EIO, "chunk {} could not be read for writing through", k.short_hex());
            }
        }
        cv_.notify_all();
        if (!st) {
            counters_.writeback_errors++;
            last_wb_error_ = st.error().str();
            return with_context(std::move(st), fmt::format("writethrough of {} chunks", claimed.size()));
        }
        left = std::move(later);
    }
    return {};
}

Status ChunkCache::flush() {
    TRY_VOID(check_writable());
    std::unique_lock lk(mu_);
    if (!opts_.remote) {
        if (dirty_chunks_ > 0)
            return failf(EINVAL, "flush: no remote attached; {} chunks stay dirty", dirty_chunks_);
        return commit_locked();
    }
    uint64_t epoch = wb_error_epoch_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return dirty_chunks_ == corrupt_dirty_ || wb_error_epoch_ != epoch || stop_; });
    if (dirty_chunks_ > corrupt_dirty_)
        return failf(EIO, "flush: write-back failed ({}); {} chunks still dirty", last_wb_error_,
                     dirty_chunks_ - corrupt_dirty_);
    if (corrupt_dirty_ > 0)
        return failf(EIO, "flush: {} dirty chunks are corrupt and can never be written back "
                     "(`criu cache verify` lists them)", corrupt_dirty_);
    return commit_locked();
}

}  // namespace criu
