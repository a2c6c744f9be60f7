// ChunkCache, part 2 of 6: reads, snapshot pins, commit, index bookkeeping.
#include <algorithm>

#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/snapshot_manifest.h"

namespace criu {

Status ChunkCache::check_writable() const {
    if (opts_.read_only)
        return fail(EROFS, "the cache was opened read-only");
    if (closed_)
        return fail(EBADF, "the cache is closed");
    return {};
}

void ChunkCache::update_evictable(Entry& en) {
    bool want = !en.e.dirty && en.pins == 0 && !en.e.corrupt;
    if (want == en.in_evictable)
        return;
    if (want)
        evictable_.emplace(en.e.seq, en.e.key);
    else
        evictable_.erase(en.e.seq);
    en.in_evictable = want;
}

void ChunkCache::set_seq(Entry& en, uint64_t seq) {
    if (en.in_evictable) {
        evictable_.erase(en.e.seq);
        evictable_.emplace(seq, en.e.key);
    }
    en.e.seq = seq;
}

void ChunkCache::touch(Entry& en) {
    // FIFO keeps insertion order; LRU moves the chunk to the young end on every use.
    // Not journaled: after a crash the order is the one of the last checkpoint and
    // journal, which only makes an eviction slightly less well informed.
    if (*opts_.policy == EvictionPolicy::lru)
        set_seq(en, next_seq_++);
}

void ChunkCache::add_pin(Entry& en) {
    en.pins++;
    update_evictable(en);
}

void ChunkCache::drop_pin(const ChunkKey& key) {
    auto it = index_.find(key);
    if (it == index_.end() || it->second.pins == 0)
        return;
    it->second.pins--;
    update_evictable(it->second);
}

void ChunkCache::pin_pending(std::string_view snapshot, Entry& en) {
    if (snapshot.empty())
        return;
    auto it = pending_pins_.find(snapshot);
    if (it == pending_pins_.end())
        it = pending_pins_.emplace(std::string(snapshot), std::unordered_set<ChunkKey, ChunkKeyHash>()).first;
    if (it->second.insert(en.e.key).second)
        add_pin(en);
}

void ChunkCache::account_add(const Entry& en) {
    uint64_t rec = record_bytes(en.e.stored_size);
    segments_.at(en.e.segment).live += rec;
    live_bytes_ += rec;
    raw_bytes_ += en.e.raw_size;
    if (en.e.dirty) {
        dirty_chunks_++;
        dirty_bytes_ += rec;
    }
    if (en.e.corrupt && en.e.dirty)
        corrupt_dirty_++;
}

void ChunkCache::account_remove(const Entry& en) {
    uint64_t rec = record_bytes(en.e.stored_size);
    if (auto s = segments_.find(en.e.segment); s != segments_.end())
        s->second.live -= rec;
    live_bytes_ -= rec;
    raw_bytes_ -= en.e.raw_size;
    if (en.e.dirty) {
        dirty_chunks_--;
        dirty_bytes_ -= rec;
    }
    if (en.e.corrupt && en.e.dirty)
        corrupt_dirty_--;
}

Status ChunkCache::drop_entry(const ChunkKey& key) {
    auto it = index_.find(key);
    if (it == index_.end())
        return {};
    JournalRecord r;
    r.op = JournalOp::drop;
    r.entry.key = key;
    TRY_VOID(journal_append(std::span<const JournalRecord>(&r, 1)));
    Entry& en = it->second;
    account_remove(en);
    if (en.in_evictable)
        evictable_.erase(en.e.seq);
    index_.erase(it);
    return {};
}

Status ChunkCache::journal_append(std::span<const JournalRecord> recs) {
    // A journal that could not be cut back after a failed append is abandoned for a
    // fresh checkpoint + journal, which hold the in-memory index (it never includes a
    // change whose record failed).
    if (journal_->broken())
        TRY_VOID_CTX(write_checkpoint_locked(), "replacing a damaged journal");
    return journal_->append(recs);
}

Status ChunkCache::commit_locked() {
    if (opts_.read_only)
        return {};
    for (auto& [id, s] : segments_)
        if (s.unsynced) {
            TRY_VOID(s.file->sync());
            s.unsynced = false;
        }
    JournalRecord r;
    r.op = JournalOp::commit;
    r.counters = counters_;
    r.next_segment = next_segment_;
    TRY_VOID(journal_append(std::span<const JournalRecord>(&r, 1)));
    TRY_VOID(journal_->sync());
    since_commit_ = 0;
    if (journal_->size() > IndexJournal::kCheckpointAt)
        TRY_VOID(write_checkpoint_locked());
    return {};
}

Status ChunkCache::commit() {
    TRY_VOID(check_writable());
    std::lock_guard lk(mu_);
    return commit_locked();
}

Expected<std::vector<uint8_t>> ChunkCache::read_checked(const Location& loc, RecordHeader* header,
                                                        bool decode) {
    const IndexEntry& e = loc.e;
    auto corrupt = [&](const std::string& why) {
        return failf(EIO, "chunk {} ({} offset {}) is corrupt: {}; it is not served", e.key.short_hex(),
                     loc.file->name(), e.offset, why);
    };
    thread_local AlignedBuffer buf;
    buf.resize(record_bytes(e.stored_size));
    Status st = loc.file->read_at(e.offset, buf.span());
    if (!st)
        return corrupt(st.error().str());
    auto h = parse_record_header(buf.span());
    if (!h)
        return corrupt(h.error().str());
    if (h->key != e.key || h->stored_size != e.stored_size || h->raw_size != e.raw_size)
        return corrupt("the record there belongs to another chunk");
    std::span<const uint8_t> stored(buf.data() + kRecordHeaderBytes, h->stored_size);
    if (header)
        *header = *h;
    if (decode) {
        auto raw = decode_stored(*h, stored);
        if (!raw)
            return corrupt(raw.error().str());
        return raw;
    }
    st = check_stored(*h, stored);
    if (!st)
        return corrupt(st.error().str());
    return std::vector<uint8_t>(stored.begin(), stored.end());
}

void ChunkCache::mark_corrupt(const Location& loc, const Error& err) {
    auto it = index_.find(loc.e.key);
    // Only if the entry still points at the copy that failed (not a fresh one).
    if (it == index_.end() || it->second.e.corrupt || it->second.e.segment != loc.e.segment ||
        it->second.e.offset != loc.e.offset)
        return;
    account_remove(it->second);
    it->second.e.corrupt = true;
    account_add(it->second);
    update_evictable(it->second);
    counters_.corrupt_chunks++;
    log_warn(err.str());
    // Recorded so that `criu cache gc` in another process finds it; if the record
    // cannot be written, the next read or verify finds the damage again.
    if (!opts_.read_only) {
        JournalRecord r;
        r.op = JournalOp::corrupt;
        r.entry.key = loc.e.key;
        if (Status st = journal_append(std::span<const JournalRecord>(&r, 1)); !st)
            log_warn("recording a corrupt chunk: " + st.error().str());
    }
    cv_.notify_all();  // a flush waiting on this dirty chunk must learn it never will be clean
}

Expected<ChunkCache::Location> ChunkCache::locate_for_read(const ChunkKey& key) {
    std::lock_guard lk(mu_);
    counters_.reads++;
    auto it = index_.find(key);
    if (it == index_.end()) {
        counters_.read_misses++;
        return failf(ENOENT, "chunk {} is not in the cache", key.short_hex());
    }
    if (it->second.e.corrupt) {
        counters_.read_misses++;
        return failf(EIO, "chunk {} is corrupt in the cache ({} offset {}); it is not served", key.short_hex(),
                     SegmentFile::file_name(it->second.e.segment), it->second.e.offset);
    }
    touch(it->second);
    return Location{segments_.at(it->second.e.segment).file, it->second.e};
}

Expected<std::vector<uint8_t>> ChunkCache::get(const ChunkKey& key) {
    if (auto z = ZeroKeys::instance().size_of(key))
        return std::vector<uint8_t>(*z, 0);
    Location loc = TRY(locate_for_read(key));
    auto data = read_checked(loc, nullptr, true);
    std::lock_guard lk(mu_);
    if (!data) {
        counters_.read_misses++;
        mark_corrupt(loc, data.error());
    } else {
        counters_.read_hits++;
    }
    return data;
}

Expected<std::vector<uint8_t>> ChunkCache::get_stored(const ChunkKey& key, RecordHeader* header) {
    Location loc = TRY(locate_for_read(key));
    auto data = read_checked(loc, header, false);
    std::lock_guard lk(mu_);
    if (!data) {
        counters_.read_misses++;
        mark_corrupt(loc, data.error());
    } else {
        counters_.read_hits++;
    }
    return data;
}

bool ChunkCache::contains(const ChunkKey& key) const {
    std::lock_guard lk(mu_);
    return index_.contains(key);
}

std::optional<ChunkInfo> ChunkCache::info(const ChunkKey& key) const {
    std::lock_guard lk(mu_);
    auto it = index_.find(key);
    if (it == index_.end())
        return std::nullopt;
    const Entry& en = it->second;
    return ChunkInfo{en.e.dirty, en.e.corrupt, en.pins, en.e.segment, en.e.offset, en.e.raw_size, en.e.stored_size};
}

Status ChunkCache::pin_snapshot(const std::string& name, std::span<const ChunkKey> keys) {
    TRY_VOID(check_writable());
    TRY_VOID(SnapshotManifest::check_name(name));
    SnapshotManifest m;
    m.name = name;
    const ZeroKeys& zeros = ZeroKeys::instance();
    for (const auto& k : keys)
        if (!zeros.size_of(k))
            m.keys.push_back(k);
    std::sort(m.keys.begin(), m.keys.end());
    m.keys.erase(std::unique(m.keys.begin(), m.keys.end()), m.keys.end());

    std::lock_guard lk(mu_);
    uint64_t missing = 0;
    const ChunkKey* first_missing = nullptr;
    for (const auto& k : m.keys) {
        auto it = index_.find(k);
        if (it == index_.end() || it->second.e.corrupt) {
            if (!missing++)
                first_missing = &k;
        }
    }
    if (missing)
        return failf(ENOENT, "snapshot '{}': {} of its {} chunks are not in the cache (first: {})", name, missing,
                     m.keys.size(), first_missing->short_hex());
    for (const auto& k : m.keys)
        add_pin(index_.at(k));
    // Chunks first, manifest second: a durable manifest never names a lost chunk.
    Status st = commit_locked();
    if (st)
        st = m.write(snapdir_.get());
    if (!st) {
        for (const auto& k : m.keys)
            drop_pin(k);
        return with_context(std::move(st), fmt::format("pin snapshot '{}'", name));
    }
    // The new pins hold: now let go of what an earlier snapshot of this name and the
    // pins taken during the dump held.
    if (auto old = snapshots_.find(name); old != snapshots_.end())
        for (const auto& k : old->second)
            drop_pin(k);
    if (auto p = pending_pins_.find(name); p != pending_pins_.end()) {
        for (const auto& k : p->second)
            drop_pin(k);
        pending_pins_.erase(p);
    }
    snapshots_[name] = std::move(m.keys);
    return {};
}

Status ChunkCache::release_snapshot(const std::string& name) {
    TRY_VOID(check_writable());
    TRY_VOID(SnapshotManifest::check_name(name));
    std::lock_guard lk(mu_);
    auto it = snapshots_.find(name);
    auto p = pending_pins_.find(name);
    if (it == snapshots_.end() && p == pending_pins_.end())
        return failf(ENOENT, "no snapshot named '{}'", name);
    if (it != snapshots_.end()) {
        TRY_VOID(SnapshotManifest::remove(snapdir_.get(), name));
        for (const auto& k : it->second)
            drop_pin(k);
        snapshots_.erase(it);
    }
    if (p != pending_pins_.end()) {
        for (const auto& k : p->second)
            drop_pin(k);
        pending_pins_.erase(p);
    }
    return {};
}

std::vector<std::string> ChunkCache::snapshots() const {
    std::lock_guard lk(mu_);
    std::vector<std::string> out;
    for (const auto& [name, keys] : snapshots_)
        out.push_back(name);
    return out;
}

}  // namespace criu
