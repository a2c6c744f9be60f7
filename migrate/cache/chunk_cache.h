// The migrator's SSD cache: a local, bounded, content-addressed, zstd-compressed chunk
// store. Dumps land here at local-disk speed while the process runs; a writer thread
// streams chunks to the remote side in the background (write-back), asking first which
// ones the remote already has, so a chunk is never sent twice. Modes and eviction
// follow the block caches people already trust (dm-cache, bcache, flashcache).
//
// On disk (cache directory):
//   seg-<id>.dat            append-only chunk records (chunk_record.h, segment_file.h)
//   index.ckpt              the whole index, replaced atomically (index_checkpoint.h)
//   journal-<gen>.log       index changes since that checkpoint (index_journal.h)
//   snapshots/<name>.snap   pinned snapshots (snapshot_manifest.h)
//   lock                    flock()ed by the one process that opens the cache read-write
//
// Chunk states: dirty (not yet acknowledged by the remote), clean (acknowledged),
// pinned (named by a snapshot; any number of pins), corrupt (failed a check; never
// served). Eviction (LRU by default, FIFO as an option) only ever takes a chunk that is
// clean, unpinned and sound. When only dirty or pinned chunks are left, put() fails
// with "cache full: N MiB dirty waiting for the remote ..." instead of evicting.
//
// Durability, like a write-back block device with volatile write cache:
//   put() / put_batch() return: the records are written to their segment (O_DIRECT
//     where the filesystem has it) and their index records appended to the journal,
//     both in the kernel. A kill -9 of this process loses nothing acknowledged. A power
//     loss may lose puts since the last commit; they are then missing, never torn.
//   commit(): segments fdatasync'ed first, then a commit record, then the journal
//     fdatasync'ed. Everything acknowledged before is durable. Runs by itself every
//     `commit_bytes` of new data, in pin_snapshot(), flush() and close().
//   pin_snapshot(): commit, then the manifest is written atomically: a durable
//     snapshot only ever names durable chunks.
//   writethrough put(): returns once the remote has acknowledged (durably, per the
//     ChunkRemote contract) as well.
//   A chunk is marked clean only after the remote's acknowledgement, and evicted only
//   when clean; a segment file is deleted only after a commit made the index that no
//   longer needs it durable.
// Recovery (open after a crash or a full disk): load the checkpoint, replay the journal
// up to its first torn record, drop entries whose segment is gone or too short, re-read
// and check every entry added after the last commit record, then write a new checkpoint
// and delete what nothing references. get() checks every record it reads (header
// checksum, key, sizes, data checksum, exact decoded size); verify() also re-hashes.
// If the checkpoint itself is unreadable the index is rebuilt by scanning the segments
// (every chunk found is then dirty: the writer asks the remote again, which is safe).
//
// Space: --cache-size bounds the segment files on disk. Live chunks may use 3/4 of it;
// the rest is the room compaction needs to reclaim the space of evicted chunks without
// ever exceeding the bound (a segment is rewritten only when the disk use plus one
// segment stays within --cache-size). The cache should hold at least 16 chunks.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "migrate/cache/cache_stats.h"
#include "migrate/cache/chunk_key.h"
#include "migrate/cache/chunk_record.h"
#include "migrate/cache/chunk_remote.h"
#include "migrate/cache/index_journal.h"
#include "migrate/cache/segment_file.h"

namespace criu {

struct ChunkCacheOptions {
    // Bound on the cache's disk use; 0 keeps what the directory was created with
    // (1 GiB for a new one). At least 4 MiB.
    uint64_t cache_size = 0;
    CacheMode mode = CacheMode::writeback;
    // nullopt keeps the directory's policy (LRU for a new one).
    std::optional<EvictionPolicy> policy;
    // zstd level; 0 stores raw. Level 1 because compression is slower than the disk
    // here (MACHINE-LIMITS.md: zstd -1 ~0.9 GiB/s a core, O_DIRECT writes 2.3+ GiB/s).
    int zstd_level = 1;
    // Threads hashing and compressing a put_batch() (the caller's included): both cores,
    // since compression and hashing are slower than the disk here.
    unsigned threads = 2;
    // Segment file size; 0 picks cache_size/16 within [256 KiB, 64 MiB].
    uint64_t segment_bytes = 0;
    bool direct_io = true;
    // For `criu cache stat` next to a running dump: no lock, nothing written, no
    // recovery beyond what reading needs; every mutating call fails with EROFS.
    bool read_only = false;
    // Where write-back goes; required for writethrough. Not owned; must outlive the cache.
    ChunkRemote* remote = nullptr;
    size_t writeback_batch = 64;  // keys per have() question
    // writeback with a remote: a put that finds the live room full of dirty chunks waits
    // for the writer to clean some (they are never evicted before the remote has them)
    // instead of failing with "cache full"; it fails only if a write-back attempt fails
    // meanwhile. For a dump that must go on at the pace of the link (migrate).
    bool wait_for_writeback = false;
    uint64_t commit_bytes = 64ull << 20;
    Log* log = nullptr;  // recovery and write-back problems are logged here if set
};

// What open() found and did.
struct RecoveryReport {
    bool clean_shutdown = true;
    bool rebuilt_from_segments = false;  // checkpoint missing or unreadable
    uint64_t journal_records = 0;
    uint64_t journal_ignored_bytes = 0;  // torn tail
    std::string journal_problem;
    uint64_t unconfirmed_checked = 0;    // entries after the last commit, re-read
    uint64_t dropped = 0;                // entries whose data was missing or torn
    uint64_t stale_files_removed = 0;
    std::vector<std::string> warnings;
    // No new checkpoint could be written (a full disk): the cache goes on appending to
    // the journal it recovered from, and deletes nothing until a checkpoint succeeds.
    bool kept_old_checkpoint = false;
};

struct VerifyReport {
    uint64_t chunks_checked = 0;
    uint64_t bytes_checked = 0;  // stored bytes read
    std::vector<std::string> problems;
    bool ok() const { return problems.empty(); }
};

struct GcReport {
    uint64_t evicted = 0;
    uint64_t corrupt_dropped = 0;
    uint64_t segments_compacted = 0;
    uint64_t disk_bytes_before = 0;
    uint64_t disk_bytes_after = 0;
    std::vector<std::string> warnings;  // e.g. a dirty chunk dropped as corrupt
};

// The state of one cached chunk (tests, `criu cache` tooling).
struct ChunkInfo {
    bool dirty = false;
    bool corrupt = false;
    uint32_t pins = 0;
    uint32_t segment = 0;
    uint64_t offset = 0;
    uint32_t raw_size = 0;
    uint32_t stored_size = 0;
};

class ChunkCache {
public:
    static Expected<std::unique_ptr<ChunkCache>> open(const std::string& dir, ChunkCacheOptions opts = {});
    // Stops the writer, commits and writes a checkpoint (see close()).
    ~ChunkCache();
    ChunkCache(const ChunkCache&) = delete;
    ChunkCache& operator=(const ChunkCache&) = delete;

    // Stores one chunk (1 byte to kMaxChunkBytes) and returns its key. Content already
    // cached is not stored again; all-zero chunks (page multiples) are never stored.
    // With `snapshot`, the chunk is pinned at once under that name (in memory) until
    // pin_snapshot() makes the pin durable or release_snapshot() drops it: a chunk a
    // dump is collecting cannot be evicted before its snapshot is pinned.
    // Thread-safe; concurrent puts compress in parallel.
    Expected<ChunkKey> put(std::span<const uint8_t> data, std::string_view snapshot = {});
    // The same for many chunks (a dump's batch of page runs): keys are computed and new
    // chunks compressed on `threads` threads, and the new records go to the disk in as
    // few writes as possible (one per segment) with their index records in one append.
    // On failure, chunks before the failing one may be stored (putting them again is a
    // cheap hit).
    Expected<std::vector<ChunkKey>> put_batch(std::span<const std::span<const uint8_t>> chunks,
                                              std::string_view snapshot = {});
    // Stores a chunk received in stored form (the receiving side), after checking
    // that it decodes to data with this key.
    Status put_stored(const StoredChunk& chunk);

    // The chunk's raw bytes, checked; ENOENT if not cached, EIO naming the chunk if
    // its record is torn or corrupt (it is then marked corrupt and never served).
    Expected<std::vector<uint8_t>> get(const ChunkKey& key);
    // The stored form, for sending elsewhere (checked like get()).
    Expected<std::vector<uint8_t>> get_stored(const ChunkKey& key, RecordHeader* header);

    bool contains(const ChunkKey& key) const;
    std::optional<ChunkInfo> info(const ChunkKey& key) const;

    // Durably pins `keys` under `name` (replacing an earlier snapshot of that name).
    // Every non-zero key must be cached. See the top of this file for the ordering.
    Status pin_snapshot(const std::string& name, std::span<const ChunkKey> keys);
    Status release_snapshot(const std::string& name);
    std::vector<std::string> snapshots() const;

    Status commit();
    // Waits until no chunk is dirty (written back and acknowledged), then commits.
    // Fails if there is no remote, or if a write-back attempt fails meanwhile.
    Status flush();

    VerifyReport verify();
    // Drops corrupt entries, evicts clean unpinned chunks until live bytes are at most
    // `target_live_bytes` (0: the live limit), compacts every segment with garbage,
    // writes a checkpoint.
    Expected<GcReport> gc(uint64_t target_live_bytes = 0);

    CacheStats stats() const;
    const RecoveryReport& recovery() const { return recovery_; }
    const std::string& dir() const { return dir_; }
    CacheMode mode() const { return opts_.mode; }
    ChunkRemote* remote() const { return opts_.remote; }

    // Stops the writer (dirty chunks stay dirty, on disk), commits, checkpoints.
    Status close();

private:
    struct Entry {
        IndexEntry e;
        uint32_t pins = 0;
        bool in_evictable = false;
        bool sending = false;  // a write-back of it is in progress
    };
    struct Segment {
        std::shared_ptr<SegmentFile> file;
        uint64_t size = 0;      // bytes handed out (records + dead space)
        uint64_t live = 0;      // record bytes of indexed chunks
        uint32_t inflight = 0;  // reserved, write not finished
        bool unsynced = false;  // written since the last fdatasync
    };
    // What a reader needs, copied under the lock so the read itself runs without it.
    struct Location {
        std::shared_ptr<SegmentFile> file;
        IndexEntry e;
    };

    ChunkCache(std::string dir, ChunkCacheOptions opts);

    // chunk_cache.cc: open, recovery, checkpoint, close.
    Status open_dir();
    Status load_index();
    Status rebuild_from_segments(const std::vector<uint32_t>& ids);
    Status load_segments(const std::vector<uint32_t>& ids);
    Status validate_entries(const std::unordered_set<ChunkKey, ChunkKeyHash>& unconfirmed);
    Status load_snapshots();
    Status remove_stale_files();
    Status write_checkpoint_locked();
    void apply_journal_record(const JournalRecord& r, std::unordered_set<ChunkKey, ChunkKeyHash>& unconfirmed);
    void index_insert(const IndexEntry& e);

    // chunk_cache_put.cc: puts.
    struct NewRecord {
        ChunkKey key;
        RecordHeader h;
        const AlignedBuffer* rec = nullptr;
    };
    Status store_records(std::span<const NewRecord> items, std::string_view snapshot);
    // Runs `job` on the caller and on every helper thread, returns when all are done.
    // Helpers live as long as the cache: a fresh thread per batch would also bring a
    // fresh zstd context, and touching new memory costs ~10 us a page here.
    void run_on_helpers(const std::function<void()>& job);
    void helper_loop();
    bool write_hit(const ChunkKey& key, uint32_t raw_size, std::string_view snapshot, bool* dirty);

    // chunk_cache_io.cc: reads, pins, commit.
    Expected<Location> locate_for_read(const ChunkKey& key);
    Expected<std::vector<uint8_t>> read_checked(const Location& loc, RecordHeader* header, bool decode);
    void mark_corrupt(const Location& loc, const Error& err);
    void touch(Entry& en);
    void set_seq(Entry& en, uint64_t seq);
    void update_evictable(Entry& en);
    void add_pin(Entry& en);
    void drop_pin(const ChunkKey& key);
    void pin_pending(std::string_view snapshot, Entry& en);
    void account_add(const Entry& en);
    void account_remove(const Entry& en);
    Status drop_entry(const ChunkKey& key);
    Status commit_locked();
    Status journal_append(std::span<const JournalRecord> recs);
    Status check_writable() const;

    // chunk_cache_space.cc: reservation, eviction, compaction.
    struct Reservation {
        std::shared_ptr<SegmentFile> file;
        uint64_t offset = 0;
    };
    // With `may_wait` false, fails with EAGAIN instead of waiting for other writes to
    // land (a caller holding reservations of its own must not wait for itself).
    Expected<Reservation> reserve(std::unique_lock<std::mutex>& lk, uint64_t bytes, bool may_wait = true);
    Expected<Reservation> reserve_append(uint64_t bytes);
    void finish_write(uint32_t segment);
    Status evict_until(uint64_t live_target, uint64_t* evicted);
    Status make_disk_room(std::unique_lock<std::mutex>& lk, uint64_t bytes, bool may_wait);
    Status delete_dead_segments();
    Expected<bool> compact_one();
    Status relocate(uint32_t segment);
    uint64_t live_limit() const;
    uint64_t max_segment_bytes() const;
    std::string full_message() const;

    // chunk_cache_writeback.cc: background writer, writethrough, flush.
    void writer_loop();
    Status write_back(std::span<const ChunkKey> keys, std::vector<uint8_t>& outcome);
    Status write_through(std::span<const ChunkKey> keys);
    Status mark_clean(std::span<const ChunkKey> keys, std::span<const uint8_t> outcome);

    void log_warn(const std::string& msg);

    const std::string dir_;
    ChunkCacheOptions opts_;
    UniqueFd dirfd_, snapdir_, lockfd_;
    RecoveryReport recovery_;

    mutable std::mutex mu_;
    std::condition_variable cv_;  // index changes: in-flight keys, dirty count, segments
    std::unordered_map<ChunkKey, Entry, ChunkKeyHash> index_;
    std::map<uint64_t, ChunkKey> evictable_;  // seq -> key, clean + unpinned + sound
    std::deque<ChunkKey> dirty_queue_;         // write-back order (may hold stale keys)
    std::map<uint32_t, Segment> segments_;
    std::map<std::string, std::vector<ChunkKey>> snapshots_;
    std::map<std::string, std::unordered_set<ChunkKey, ChunkKeyHash>, std::less<>> pending_pins_;
    std::optional<IndexJournal> journal_;
    uint64_t generation_ = 0;
    uint32_t active_ = 0;  // segment receiving appends; 0: none yet
    uint32_t next_segment_ = 1;
    uint64_t next_seq_ = 1;
    uint64_t segment_bytes_ = 0;
    uint64_t live_bytes_ = 0, disk_bytes_ = 0, dirty_bytes_ = 0, raw_bytes_ = 0;
    uint64_t pending_bytes_ = 0;  // reserved for records being written, not yet indexed
    uint64_t dirty_chunks_ = 0;
    uint64_t corrupt_dirty_ = 0;  // dirty and corrupt: can never be written back
    uint64_t largest_segment_ = 0;
    uint64_t since_commit_ = 0;
    CacheCounters counters_;
    std::string last_wb_error_;
    uint64_t wb_error_epoch_ = 0;

    std::thread writer_;
    std::vector<std::thread> helpers_;
    std::mutex pool_mu_;
    std::condition_variable pool_cv_;
    const std::function<void()>* pool_job_ = nullptr;
    uint64_t pool_gen_ = 0;
    size_t pool_running_ = 0;
    bool pool_busy_ = false;  // a batch owns the helpers
    bool pool_stop_ = false;
    bool stop_ = false;
    // True until open() has succeeded: a cache that failed to open (locked by someone
    // else, unreadable) must not write a checkpoint over the directory on destruction.
    bool closed_ = true;
};

}  // namespace criu
