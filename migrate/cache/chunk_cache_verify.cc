// ChunkCache, part 5 of 6: verify and stats.
#include <algorithm>

#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/snapshot_manifest.h"

namespace criu {

VerifyReport ChunkCache::verify() {
    VerifyReport rep;
    struct Item {
        Location loc;
        bool corrupt;
    };
    std::vector<Item> items;
    {
        std::lock_guard lk(mu_);
        items.reserve(index_.size());
        for (const auto& [key, en] : index_)
            items.push_back({Location{segments_.at(en.e.segment).file, en.e}, en.e.corrupt});

        // Index consistency: the accounting matches the entries, no two records
        // overlap, every record lies inside its segment, every pin is backed.
        std::map<uint32_t, uint64_t> live;
        uint64_t live_total = 0, dirty = 0;
        std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> extents;
        std::unordered_map<ChunkKey, uint32_t, ChunkKeyHash> pins;
        for (const auto& [name, keys] : snapshots_)
            for (const auto& k : keys)
                pins[k]++;
        for (const auto& [name, keys] : pending_pins_)
            for (const auto& k : keys)
                pins[k]++;
        for (const auto& [key, en] : index_) {
            uint64_t rec = record_bytes(en.e.stored_size);
            live[en.e.segment] += rec;
            live_total += rec;
            dirty += en.e.dirty;
            extents[en.e.segment].emplace_back(en.e.offset, en.e.offset + rec);
            const Segment& s = segments_.at(en.e.segment);
            if (en.e.offset + rec > s.size)
                rep.problems.push_back(fmt::format("chunk {}: record ends at {}, past the end of {} ({})",
                                                   key.short_hex(), en.e.offset + rec, s.file->name(), s.size));
            auto p = pins.find(key);
            uint32_t want = p == pins.end() ? 0 : p->second;
            if (want != en.pins)
                rep.problems.push_back(
                    fmt::format("chunk {}: {} pins counted, snapshots name it {} times", key.short_hex(), en.pins, want));
            bool evictable = !en.e.dirty && en.pins == 0 && !en.e.corrupt;
            if (evictable != en.in_evictable)
                rep.problems.push_back(fmt::format("chunk {}: eviction list out of step", key.short_hex()));
        }
        for (auto& [id, ext] : extents) {
            std::sort(ext.begin(), ext.end());
            for (size_t i = 1; i < ext.size(); i++)
                if (ext[i].first < ext[i - 1].second)
                    rep.problems.push_back(fmt::format("{}: records at {} and {} overlap",
                                                       SegmentFile::file_name(id), ext[i - 1].first, ext[i].first));
        }
        for (const auto& [id, s] : segments_)
            if (s.live != live[id])
                rep.problems.push_back(fmt::format("{}: {} live bytes accounted, entries hold {}", s.file->name(),
                                                   s.live, live[id]));
        if (live_total != live_bytes_ || dirty != dirty_chunks_)
            rep.problems.push_back(fmt::format("totals out of step: live {} vs {}, dirty {} vs {}", live_bytes_,
                                               live_total, dirty_chunks_, dirty));
        for (const auto& [name, keys] : snapshots_) {
            uint64_t missing = 0;
            for (const auto& k : keys)
                missing += !index_.contains(k);
            if (missing)
                rep.problems.push_back(fmt::format("snapshot '{}': {} of its {} chunks are not in the cache", name,
                                                   missing, keys.size()));
        }
    }
    // Every record: read, check, decode, and hash the data again: a record can pass
    // its checksums and still not hold the chunk its key names (a bug, a bad copy).
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
        return std::pair(a.loc.e.segment, a.loc.e.offset) < std::pair(b.loc.e.segment, b.loc.e.offset);
    });
    for (const auto& it : items) {
        rep.chunks_checked++;
        rep.bytes_checked += it.loc.e.stored_size;
        auto raw = read_checked(it.loc, nullptr, true);
        if (raw && hash_chunk(*raw) != it.loc.e.key)
            raw = failf(EIO, "chunk {} ({} offset {}) is corrupt: its data does not hash to its key",
                        it.loc.e.key.short_hex(), it.loc.file->name(), it.loc.e.offset);
        if (!raw) {
            rep.problems.push_back(raw.error().str());
            std::lock_guard lk(mu_);
            mark_corrupt(it.loc, raw.error());
        } else if (it.corrupt) {
            // Marked after a failed read that now succeeds: a transient I/O error.
            rep.problems.push_back(fmt::format("chunk {} is marked corrupt but reads back correctly now",
                                               it.loc.e.key.short_hex()));
        }
    }
    return rep;
}

CacheStats ChunkCache::stats() const {
    std::lock_guard lk(mu_);
    CacheStats s;
    s.counters = counters_;
    s.mode = opts_.mode;
    s.policy = *opts_.policy;
    s.cache_size = opts_.cache_size;
    s.live_limit = live_limit();
    s.chunks = index_.size();
    s.dirty_chunks = dirty_chunks_;
    s.clean_chunks = index_.size() - dirty_chunks_;
    s.dirty_bytes = dirty_bytes_;
    s.raw_bytes = raw_bytes_;
    s.live_bytes = live_bytes_;
    s.disk_bytes = disk_bytes_;
    s.segments = segments_.size();
    s.snapshots = snapshots_.size();
    s.last_writeback_error = last_wb_error_;
    for (const auto& [key, en] : index_) {
        if (en.pins > 0) {
            s.pinned_chunks++;
            s.pinned_bytes += record_bytes(en.e.stored_size);
        }
        s.corrupt_chunks += en.e.corrupt;
    }
    return s;
}

}  // namespace criu
