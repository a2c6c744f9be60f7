// ChunkCache, part 3 of 6: where new records go, eviction, compaction, gc.
//
// Two bounds. Live record bytes stay within 3/4 of --cache-size: beyond that, clean
// unpinned chunks are evicted in policy order, and if none is left the put fails with
// "cache full". Segment files on disk (live records plus the garbage of evicted ones)
// stay within --cache-size: a put that would leave less than one segment of room first
// deletes segments with nothing live, then compacts the segment with the most garbage
// (its live records are copied to the active segment, then it is deleted). Keeping one
// segment of room is what lets a compaction copy a whole segment without ever passing
// the bound; the 1/4 of headroom guarantees that a segment with garbage exists whenever
// room is short (garbage > 1/4 - 1/16 of the cache, the active segment holds at most 1/16).
#include <algorithm>

#include "migrate/cache/cache_files.h"
#include "migrate/cache/chunk_cache.h"

namespace criu {

uint64_t ChunkCache::live_limit() const { return opts_.cache_size / 4 * 3; }

uint64_t ChunkCache::max_segment_bytes() const { return std::max(segment_bytes_, largest_segment_); }

std::string ChunkCache::full_message() const {
    uint64_t pinned = 0;
    for (const auto& [key, en] : index_)
        if (en.pins > 0 && !en.e.dirty)
            pinned += record_bytes(en.e.stored_size);
    auto mib = [](uint64_t b) { return b / (1024.0 * 1024.0); };
    std::string remote = opts_.remote ? "waiting for the remote" : "with no remote attached to write them to";
    return fmt::format("cache full: {:.1f} MiB dirty {} and {:.1f} MiB pinned by snapshots fill the {:.1f} MiB "
                       "for live chunks; flush() or release a snapshot",
                       mib(dirty_bytes_), remote, mib(pinned), mib(live_limit()));
}

Expected<ChunkCache::Reservation> ChunkCache::reserve(std::unique_lock<std::mutex>& lk, uint64_t bytes,
                                                      bool may_wait) {
    // Records being written count as live already: a batch must not overshoot.
    for (;;) {
        uint64_t need = bytes + pending_bytes_;
        if (live_bytes_ + need <= live_limit())
            break;
        TRY_VOID(evict_until(live_limit() - std::min(need, live_limit()), nullptr));
        if (live_bytes_ + need <= live_limit())
            break;
        if (pending_bytes_ > 0 && !may_wait)
            return fail(EAGAIN, "room only once the records being written are indexed");
        // Only dirty (or pinned) chunks left: wait for the writer to clean some, if it can.
        bool writer_can = opts_.wait_for_writeback && opts_.remote && opts_.mode == CacheMode::writeback &&
                          writer_.joinable() && dirty_chunks_ > corrupt_dirty_ && !stop_;
        if (!writer_can || !may_wait)
            return fail(ENOSPC, full_message());
        uint64_t epoch = wb_error_epoch_, dirty = dirty_chunks_;
        counters_.writeback_waits++;
        cv_.notify_all();
        cv_.wait(lk, [&] { return dirty_chunks_ < dirty || wb_error_epoch_ != epoch || stop_; });
        if (wb_error_epoch_ != epoch)
            return failf(ENOSPC, "{} (the write-back failed meanwhile: {})", full_message(), last_wb_error_);
    }
    TRY_VOID(make_disk_room(lk, bytes, may_wait));
    Reservation r = TRY(reserve_append(bytes));
    pending_bytes_ += bytes;
    return r;
}

Expected<ChunkCache::Reservation> ChunkCache::reserve_append(uint64_t bytes) {
    if (active_ != 0) {
        const Segment& s = segments_.at(active_);
        if (s.size > 0 && s.size + bytes > segment_bytes_)
            active_ = 0;  // sealed: no more appends to it
    }
    if (active_ == 0) {
        auto f = TRY(SegmentFile::create(dirfd_.get(), next_segment_, opts_.direct_io));
        // The records about to go in are only found through this name: make it durable
        // (an fdatasync of the file does not cover its directory entry).
        TRY_VOID(fsync_dir(dirfd_.get()));
        Segment s;
        s.file = std::move(f);
        segments_.emplace(next_segment_, std::move(s));
        active_ = next_segment_++;
    }
    Segment& s = segments_.at(active_);
    Reservation r{s.file, s.size};
    s.size += bytes;
    s.inflight++;
    disk_bytes_ += bytes;
    largest_segment_ = std::max(largest_segment_, s.size);
    return r;
}

void ChunkCache::finish_write(uint32_t segment) {
    // A failed write leaves its reserved space as garbage: counted on disk, not live.
    Segment& s = segments_.at(segment);
    s.inflight--;
    // Marked when the write is done, not when it was reserved: a commit that ran
    // meanwhile did not cover it, and the index record for it comes after this.
    s.unsynced = true;
    cv_.notify_all();
}

Status ChunkCache::evict_until(uint64_t live_target, uint64_t* evicted) {
    std::vector<JournalRecord> drops;
    uint64_t live = live_bytes_;
    for (auto it = evictable_.begin(); it != evictable_.end() && live > live_target; ++it) {
        const Entry& en = index_.at(it->second);
        JournalRecord r;
        r.op = JournalOp::drop;
        r.entry.key = en.e.key;
        drops.push_back(r);
        live -= record_bytes(en.e.stored_size);
    }
    if (drops.empty())
        return {};
    // All or nothing: an eviction whose record did not make it is not done.
    TRY_VOID_CTX(journal_append(drops), "evict {} chunks", drops.size());
    for (const auto& r : drops) {
        auto it = index_.find(r.entry.key);
        Entry& en = it->second;
        counters_.evictions++;
        counters_.evicted_bytes += record_bytes(en.e.stored_size);
        account_remove(en);
        evictable_.erase(en.e.seq);
        index_.erase(it);
    }
    if (evicted)
        *evicted += drops.size();
    return {};
}

Status ChunkCache::make_disk_room(std::unique_lock<std::mutex>& lk, uint64_t bytes, bool may_wait) {
    while (disk_bytes_ + bytes + max_segment_bytes() > opts_.cache_size) {
        bool dead = false, busy = false;
        for (const auto& [id, s] : segments_) {
            if (id == active_)
                continue;
            if (s.inflight > 0)
                busy = true;
            else if (s.live == 0)
                dead = true;
        }
        if (dead) {
            TRY_VOID(delete_dead_segments());
            continue;
        }
        if (TRY(compact_one()))
            continue;
        if (busy) {
            // A segment still receiving a concurrent put cannot be compacted yet.
            if (!may_wait)
                return fail(EAGAIN, "room only once the records being written have landed");
            cv_.wait(lk);
            continue;
        }
        return failf(ENOSPC, "cache full: {:.1f} MiB of segment files, {:.1f} MiB of them live, in a {:.1f} MiB "
                     "cache (chunks too large for this cache size?)",
                     disk_bytes_ / 1048576.0, live_bytes_ / 1048576.0, opts_.cache_size / 1048576.0);
    }
    return {};
}

Status ChunkCache::delete_dead_segments() {
    std::vector<uint32_t> dead;
    for (const auto& [id, s] : segments_)
        if (id != active_ && s.inflight == 0 && s.live == 0)
            dead.push_back(id);
    if (dead.empty())
        return {};
    // The index that no longer points into them must be durable before they go.
    TRY_VOID(commit_locked());
    for (uint32_t id : dead) {
        std::string name = SegmentFile::file_name(id);
        if (::unlinkat(dirfd_.get(), name.c_str(), 0) != 0 && errno != ENOENT)
            return fail_errno("remove {}", name);
        disk_bytes_ -= segments_.at(id).size;
        segments_.erase(id);
    }
    return fsync_dir(dirfd_.get());
}

Expected<bool> ChunkCache::compact_one() {
    uint32_t best = 0;
    uint64_t best_garbage = 0;
    for (const auto& [id, s] : segments_) {
        if (s.inflight > 0)
            continue;
        uint64_t garbage = s.size - s.live;
        if (garbage > best_garbage) {
            best = id;
            best_garbage = garbage;
        }
    }
    if (best == 0)
        return false;
    if (best == active_)
        active_ = 0;  // seal it; relocation appends to a new segment
    TRY_VOID_CTX(relocate(best), "compact {}", SegmentFile::file_name(best));
    counters_.compactions++;
    TRY_VOID(delete_dead_segments());
    return true;
}

Status ChunkCache::relocate(uint32_t segment) {
    std::vector<std::pair<uint64_t, ChunkKey>> live;
    for (const auto& [key, en] : index_)
        if (en.e.segment == segment)
            live.emplace_back(en.e.offset, key);
    std::sort(live.begin(), live.end());
    std::shared_ptr<SegmentFile> from = segments_.at(segment).file;
    AlignedBuffer buf;
    for (const auto& [offset, key] : live) {
        Entry& en = index_.at(key);
        uint64_t rec = record_bytes(en.e.stored_size);
        buf.resize(rec);
        // Check before copying: a compaction must not give a torn record a fresh,
        // trusted location. A bad one is dropped (its data is gone either way).
        Status st = from->read_at(offset, buf.span());
        if (st) {
            auto h = parse_record_header(buf.span());
            if (!h)
                st = std::unexpected(std::move(h.error()));
            else if (h->key != key || h->stored_size != en.e.stored_size)
                st = fail(EIO, "the record there belongs to another chunk");
            else
                st = check_stored(*h, std::span<const uint8_t>(buf.data() + kRecordHeaderBytes, h->stored_size));
        }
        if (!st) {
            log_warn(fmt::format("chunk {} ({} offset {}) dropped during compaction{}: {}", key.short_hex(),
                                 from->name(), offset, en.e.dirty ? " before write-back" : "",
                                 st.error().str()));
            if (!en.e.corrupt)
                counters_.corrupt_chunks++;
            TRY_VOID(drop_entry(key));
            continue;
        }
        Reservation r = TRY(reserve_append(rec));
        uint32_t to = r.file->id();
        st = r.file->write_at(r.offset, buf.span());
        finish_write(to);
        TRY_VOID(std::move(st));
        IndexEntry e = en.e;
        e.segment = to;
        e.offset = r.offset;
        e.corrupt = false;  // it just passed every check
        JournalRecord jr;
        jr.op = JournalOp::add;
        jr.entry = e;
        TRY_VOID(journal_append(std::span<const JournalRecord>(&jr, 1)));
        account_remove(en);
        en.e = e;
        account_add(en);
        update_evictable(en);
        counters_.relocated_bytes += rec;
        counters_.stored_bytes_written += rec;
    }
    return {};
}

Expected<GcReport> ChunkCache::gc(uint64_t target_live_bytes) {
    TRY_VOID(check_writable());
    std::unique_lock lk(mu_);
    GcReport rep;
    rep.disk_bytes_before = disk_bytes_;
    std::vector<ChunkKey> corrupt;
    for (const auto& [key, en] : index_)
        if (en.e.corrupt)
            corrupt.push_back(key);
    for (const auto& key : corrupt) {
        const Entry& en = index_.at(key);
        if (en.e.dirty || en.pins > 0)
            rep.warnings.push_back(fmt::format("corrupt chunk {} dropped although {}", key.short_hex(),
                                               en.e.dirty ? "the remote never got it" : "a snapshot pins it"));
        TRY_VOID(drop_entry(key));
        rep.corrupt_dropped++;
    }
    uint64_t target = target_live_bytes ? std::min(target_live_bytes, live_limit()) : live_limit();
    TRY_VOID(evict_until(target, &rep.evicted));
    // Seal the active segment so that its garbage can go too; a segment still being
    // written by a concurrent put is left for next time.
    if (active_ != 0 && segments_.at(active_).inflight == 0)
        active_ = 0;
    std::vector<uint32_t> ids;
    for (const auto& [id, s] : segments_)
        if (id != active_ && s.inflight == 0 && s.live > 0 && s.live < s.size)
            ids.push_back(id);
    for (uint32_t id : ids) {
        // Relocation packs into the active segment, which may be one that was just
        // filled by earlier relocations of this loop: skip those.
        if (!segments_.contains(id) || id == active_)
            continue;
        TRY_VOID_CTX(relocate(id), "compact {}", SegmentFile::file_name(id));
        counters_.compactions++;
        rep.segments_compacted++;
        TRY_VOID(delete_dead_segments());
    }
    TRY_VOID(delete_dead_segments());
    TRY_VOID(commit_locked());
    TRY_VOID(write_checkpoint_locked());
    rep.disk_bytes_after = disk_bytes_;
    return rep;
}

}  // namespace criu
