// What `criu cache stat` reports, in the spirit of `dmsetup status` for dm-cache and
// bcache's sysfs stats: reads, writes, hits and hit ratio, dirty chunks waiting for
// write-back, evictions, bytes deduplicated.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace criu {

enum class CacheMode : uint8_t {
    // Acknowledged once stored in the local cache; written to the remote in the
    // background (dm-cache / bcache "writeback").
    writeback = 0,
    // Acknowledged only once the remote has it too.
    writethrough = 1,
    // No remote behind this store (it is the final home, e.g. the receiving side):
    // chunks are clean as soon as they are stored.
    standalone = 2,
};

enum class EvictionPolicy : uint8_t { lru = 0, fifo = 1 };

std::string_view mode_name(CacheMode m);
// `s` as a JSON string literal (RFC 8259 escaping).
std::string json_quote(std::string_view s);
std::string_view policy_name(EvictionPolicy p);

// Event counters. Persisted with every commit and checkpoint, so they survive restarts
// (what happened after the last commit before a crash is lost, like any cached write).
struct CacheCounters {
    uint64_t reads = 0;              // get() calls for non-zero chunks
    uint64_t read_hits = 0;
    uint64_t read_misses = 0;
    uint64_t writes = 0;             // put() calls
    uint64_t write_hits = 0;         // content already cached: deduplicated locally
    uint64_t write_misses = 0;       // new content stored
    uint64_t zero_chunks = 0;        // all-zero puts: never stored, never sent
    uint64_t raw_bytes_in = 0;       // raw bytes of every put
    uint64_t zero_bytes = 0;
    uint64_t dedup_local_bytes = 0;  // raw bytes of write hits
    uint64_t stored_bytes_written = 0;  // record bytes appended to segments (new chunks + relocations)
    uint64_t writebacks = 0;         // chunks sent to the remote
    uint64_t writeback_bytes = 0;    // stored bytes sent
    uint64_t dedup_remote_chunks = 0;  // dirty chunks the remote already had: not sent
    uint64_t dedup_remote_bytes = 0;
    uint64_t writeback_errors = 0;
    uint64_t evictions = 0;
    uint64_t evicted_bytes = 0;      // record bytes
    uint64_t compactions = 0;        // segments rewritten to reclaim space
    uint64_t relocated_bytes = 0;
    uint64_t corrupt_chunks = 0;     // records found torn or corrupt and refused
    uint64_t dropped_on_recovery = 0;
    uint64_t recoveries = 0;         // opens that found the cache not cleanly closed
    uint64_t writeback_waits = 0;    // puts that waited for write-back to free room (wait_for_writeback)
};

// Name and member of every counter, in their persisted order. A new counter goes at
// the end: older files simply lack it and it reads as zero.
inline constexpr std::array<std::pair<const char*, uint64_t CacheCounters::*>, 24> kCounterFields = {{
    {"reads", &CacheCounters::reads},
    {"read_hits", &CacheCounters::read_hits},
    {"read_misses", &CacheCounters::read_misses},
    {"writes", &CacheCounters::writes},
    {"write_hits", &CacheCounters::write_hits},
    {"write_misses", &CacheCounters::write_misses},
    {"zero_chunks", &CacheCounters::zero_chunks},
    {"raw_bytes_in", &CacheCounters::raw_bytes_in},
    {"zero_bytes", &CacheCounters::zero_bytes},
    {"dedup_local_bytes", &CacheCounters::dedup_local_bytes},
    {"stored_bytes_written", &CacheCounters::stored_bytes_written},
    {"writebacks", &CacheCounters::writebacks},
    {"writeback_bytes", &CacheCounters::writeback_bytes},
    {"dedup_remote_chunks", &CacheCounters::dedup_remote_chunks},
    {"dedup_remote_bytes", &CacheCounters::dedup_remote_bytes},
    {"writeback_errors", &CacheCounters::writeback_errors},
    {"evictions", &CacheCounters::evictions},
    {"evicted_bytes", &CacheCounters::evicted_bytes},
    {"compactions", &CacheCounters::compactions},
    {"relocated_bytes", &CacheCounters::relocated_bytes},
    {"corrupt_chunks", &CacheCounters::corrupt_chunks},
    {"dropped_on_recovery", &CacheCounters::dropped_on_recovery},
    {"recoveries", &CacheCounters::recoveries},
    {"writeback_waits", &CacheCounters::writeback_waits},
}};

// Counters plus the state of the cache right now.
struct CacheStats {
    CacheCounters counters;
    CacheMode mode = CacheMode::writeback;
    EvictionPolicy policy = EvictionPolicy::lru;
    uint64_t cache_size = 0;      // --cache-size: bound on the segment files on disk
    uint64_t live_limit = 0;      // bound on live record bytes (the rest is compaction headroom)
    uint64_t chunks = 0;
    uint64_t dirty_chunks = 0;    // not yet acknowledged by the remote
    uint64_t clean_chunks = 0;
    uint64_t pinned_chunks = 0;   // needed by at least one snapshot
    uint64_t corrupt_chunks = 0;  // refused on read, still indexed until gc
    uint64_t dirty_bytes = 0;     // record bytes
    uint64_t pinned_bytes = 0;
    uint64_t raw_bytes = 0;       // raw size of the cached chunks
    uint64_t live_bytes = 0;      // record bytes of the cached chunks
    uint64_t disk_bytes = 0;      // segment files, live and garbage
    uint64_t segments = 0;
    uint64_t snapshots = 0;
    std::string last_writeback_error;

    uint64_t hits() const { return counters.read_hits + counters.write_hits; }
    // Hits over reads + writes of non-zero chunks, as dm-cache counts both directions.
    double hit_ratio() const;
    double read_hit_ratio() const;
    // Raw bytes per stored byte of the cached chunks (> 1 means compression helps).
    double compression_ratio() const;
    uint64_t dedup_bytes() const {
        return counters.dedup_local_bytes + counters.dedup_remote_bytes + counters.zero_bytes;
    }

    // One JSON object, keys as in kCounterFields plus the gauges above.
    std::string to_json() const;
    // One line, dmsetup-status style: "<used>/<size> MiB chunks 12 dirty 3 ... ".
    std::string to_line() const;
};

}  // namespace criu
