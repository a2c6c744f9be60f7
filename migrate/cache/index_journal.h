// The index journal: an append-only log of index changes since the last checkpoint
// (index_checkpoint.h), replayed on open. journal-<generation>.log belongs to the
// checkpoint of the same generation; any other journal is stale and removed.
//
//   header   u32 magic "CCJL" | u32 version | u64 generation | u32 crc32c(previous 16) | u32 0
//   record   u8 op | u8 0 | u16 payload length | u32 crc32c(record with this field 0) | payload
//
// Every record is checksummed, so a record torn by a crash (kill -9 in the middle of
// write(), a full disk) is recognised; replay stops there and ignores the rest. An
// append that fails cuts the file back to where it was, so a failed record never hides
// the records written after it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "migrate/cache/byte_io.h"
#include "migrate/cache/cache_stats.h"
#include "migrate/cache/chunk_key.h"

namespace criu {

// Where a chunk lives and in which state: the persistent part of an index entry.
struct IndexEntry {
    ChunkKey key;
    uint32_t segment = 0;
    uint64_t offset = 0;
    uint32_t stored_size = 0;
    uint32_t raw_size = 0;
    bool dirty = false;    // not yet acknowledged by the remote
    bool corrupt = false;  // failed a check: never served, dropped by gc
    uint64_t seq = 0;    // eviction order: last use (LRU) or insertion (FIFO)
};
void write_entry(ByteWriter& w, const IndexEntry& e);
bool read_entry(ByteReader& r, IndexEntry& e);

// Persisted counters, tolerant of a different number of them (older/newer files).
void write_counters(ByteWriter& w, const CacheCounters& c);
bool read_counters(ByteReader& r, CacheCounters& c);

enum class JournalOp : uint8_t {
    add = 1,     // entry (new chunk, or a chunk moved by compaction)
    clean = 2,   // key: the remote acknowledged it
    drop = 3,    // key: evicted, or dropped as corrupt
    commit = 4,  // counters + next segment id: everything before is durable
    corrupt = 5, // key: its record failed a check (so that gc in another process knows)
};

struct JournalRecord {
    JournalOp op = JournalOp::add;
    IndexEntry entry;  // add: all of it; clean, drop: key only
    CacheCounters counters;   // commit
    uint32_t next_segment = 0;  // commit
};

class IndexJournal {
public:
    static std::string file_name(uint64_t generation);
    static bool parse_name(const std::string& name, uint64_t& generation);

    // Creates (or truncates) the journal of `generation`, header durable on return.
    static Expected<IndexJournal> create(int dirfd, uint64_t generation);
    // Reopens an existing journal for appending after its last intact record (what
    // replay() reported as good_bytes), cutting off a torn tail first. For when no new
    // checkpoint can be written (a full disk): shrinking a file needs no space.
    static Expected<IndexJournal> reopen(int dirfd, uint64_t generation, uint64_t good_bytes);

    // Appends with one write(): a record reaches the kernel whole or the file is cut
    // back. Not synced: see sync().
    Status append(std::span<const JournalRecord> records);
    Status append(const JournalRecord& r) { return append(std::span<const JournalRecord>(&r, 1)); }
    // fdatasync: every appended record is durable.
    Status sync();

    uint64_t size() const { return size_; }
    uint64_t generation() const { return generation_; }
    // A failed append could not be undone: appends are refused until the cache writes a
    // new checkpoint and starts a new journal.
    bool broken() const { return broken_; }

    struct Replay {
        uint64_t records = 0;
        uint64_t good_bytes = 0;     // header + intact records
        uint64_t ignored_bytes = 0;  // torn or corrupt tail
        std::string problem;         // why replay stopped early ("" if it did not)
        bool missing = false;        // no journal file at all
    };
    // Calls `fn` for each intact record in order, stopping at the first bad one.
    static Expected<Replay> replay(int dirfd, uint64_t generation,
                                   const std::function<void(const JournalRecord&)>& fn);

    // Largest journal a reader accepts, and the size at which the cache checkpoints.
    static constexpr uint64_t kMaxBytes = 1ull << 30;
    static constexpr uint64_t kCheckpointAt = 64ull << 20;

private:
    IndexJournal(UniqueFd fd, uint64_t generation, uint64_t size)
        : fd_(std::move(fd)), generation_(generation), size_(size) {}
    // One write() of `bytes` at the end; on failure, truncates back to size_.
    Status write_bytes(std::span<const uint8_t> bytes);

    UniqueFd fd_;
    uint64_t generation_ = 0;
    uint64_t size_ = 0;
    bool broken_ = false;
};

}  // namespace criu
