// ChunkCache, part 1 of 6: opening a cache directory, recovery, checkpoints, close.
// (The class is split by concern: chunk_cache_put.cc puts, chunk_cache_io.cc reads,
// pins and commits, chunk_cache_space.cc eviction and compaction,
// chunk_cache_writeback.cc the writer, chunk_cache_verify.cc verify and stats.)
#include "migrate/cache/chunk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

#include "migrate/cache/cache_files.h"
#include "migrate/cache/index_checkpoint.h"
#include "migrate/cache/snapshot_manifest.h"

namespace criu {
namespace {

constexpr uint64_t kDefaultCacheSize = 1ull << 30;
constexpr uint64_t kMinCacheSize = 4ull << 20;
constexpr const char* kLockFile = "lock";

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status mkdir_p(const std::string& path) {
    for (size_t i = 1; i <= path.size(); i++) {
        if (i < path.size() && path[i] != '/')
            continue;
        std::string part = path.substr(0, i);
        if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
            return fail_errno("mkdir {}", part);
    }
    return {};
}

struct DirListing {
    std::vector<uint32_t> segments;
    std::vector<uint64_t> journals;
    std::vector<std::string> temps;
};

Expected<DirListing> list_dir(int dirfd) {
    int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("open cache directory");
    DIR* d = ::fdopendir(fd);
    if (!d) {
        ::close(fd);
        return fail_errno("read cache directory");
    }
    DirListing out;
    while (struct dirent* de = ::readdir(d)) {
        std::string n = de->d_name;
        uint32_t id;
        uint64_t gen;
        if (SegmentFile::parse_name(n, id))
            out.segments.push_back(id);
        else if (IndexJournal::parse_name(n, gen))
            out.journals.push_back(gen);
        else if (ends_with(n, ".tmp"))
            out.temps.push_back(n);
    }
    ::closedir(d);
    std::sort(out.segments.begin(), out.segments.end());
    return out;
}

}  // namespace

ChunkCache::ChunkCache(std::string dir, ChunkCacheOptions opts) : dir_(std::move(dir)), opts_(opts) {}

Expected<std::unique_ptr<ChunkCache>> ChunkCache::open(const std::string& dir, ChunkCacheOptions opts) {
    if (opts.mode == CacheMode::writethrough && opts.remote == nullptr)
        return fail(EINVAL, "writethrough mode needs a remote to write through to");
    if (opts.cache_size != 0 && opts.cache_size < kMinCacheSize)
        return failf(EINVAL, "cache size {} bytes is below the minimum of {} MiB", opts.cache_size,
                     kMinCacheSize >> 20);
    if (opts.zstd_level < 0 || opts.zstd_level > 19)
        return failf(EINVAL, "zstd level {} out of range 0..19", opts.zstd_level);
    std::unique_ptr<ChunkCache> c(new ChunkCache(dir, opts));
    TRY_VOID_CTX(c->open_dir(), "cache {}", dir);
    TRY_VOID_CTX(c->load_index(), "cache {}", dir);
    c->closed_ = false;
    if (opts.read_only)
        return c;
    try {
        if (opts.remote)
            c->writer_ = std::thread(&ChunkCache::writer_loop, c.get());
        for (unsigned t = 1; t < opts.threads; t++)
            c->helpers_.emplace_back(&ChunkCache::helper_loop, c.get());
    } catch (const std::system_error& e) {
        // Helpers are an optimisation; the writer is not.
        if (opts.remote && !c->writer_.joinable())
            return failf(e.code().value(), "cache {}: start the write-back thread: {}", dir, e.what());
    }
    return c;
}

ChunkCache::~ChunkCache() {
    Status st = close();
    if (!st)
        log_warn("closing the cache: " + st.error().str());
}

void ChunkCache::log_warn(const std::string& msg) {
    if (opts_.log)
        opts_.log->warn("cache", "{}: {}", dir_, msg);
}

Status ChunkCache::open_dir() {
    if (!opts_.read_only)
        TRY_VOID(mkdir_p(dir_));
    dirfd_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd_)
        return fail_errno("open directory");
    if (!opts_.read_only) {
        // One writer per directory: two processes appending to the same segments and
        // journal would corrupt each other. flock is dropped by the kernel when the
        // process dies, so a crashed owner never leaves the cache locked.
        lockfd_.reset(::openat(dirfd_.get(), kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        if (!lockfd_)
            return fail_errno("open {}", kLockFile);
        if (::flock(lockfd_.get(), LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = {};
            ssize_t n = ::pread(lockfd_.get(), buf, sizeof buf - 1, 0);
            std::string who = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "another process";
            if (e == EWOULDBLOCK)
                return failf(EBUSY, "in use by pid {}", who);
            return fail(e, "lock");
        }
        // The pid only makes the "in use" message better: on a full disk, do without.
        std::string pid = std::to_string(::getpid());
        if (::ftruncate(lockfd_.get(), 0) == 0 && ::pwrite(lockfd_.get(), pid.data(), pid.size(), 0) < 0)
            log_warn(fmt::format("write {}: {}", kLockFile, std::strerror(errno)));
        if (::mkdirat(dirfd_.get(), SnapshotManifest::kDir, 0700) != 0 && errno != EEXIST)
            return fail_errno("mkdir {}", SnapshotManifest::kDir);
    }
    snapdir_.reset(::openat(dirfd_.get(), SnapshotManifest::kDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!snapdir_ && !(opts_.read_only && errno == ENOENT))
        return fail_errno("open {}", SnapshotManifest::kDir);
    return {};
}

void ChunkCache::index_insert(const IndexEntry& e) {
    Entry& en = index_[e.key];
    en.e = e;
    next_seq_ = std::max(next_seq_, e.seq + 1);
}

void ChunkCache::apply_journal_record(const JournalRecord& r,
                                      std::unordered_set<ChunkKey, ChunkKeyHash>& unconfirmed) {
    switch (r.op) {
    case JournalOp::add:
        index_insert(r.entry);
        unconfirmed.insert(r.entry.key);
        break;
    case JournalOp::clean:
        if (auto it = index_.find(r.entry.key); it != index_.end())
            it->second.e.dirty = false;
        break;
    case JournalOp::drop:
        index_.erase(r.entry.key);
        unconfirmed.erase(r.entry.key);
        break;
    case JournalOp::corrupt:
        if (auto it = index_.find(r.entry.key); it != index_.end())
            it->second.e.corrupt = true;
        break;
    case JournalOp::commit:
        // Records before a commit point at data that was fdatasync'ed first.
        counters_ = r.counters;
        next_segment_ = std::max(next_segment_, r.next_segment);
        unconfirmed.clear();
        break;
    }
}

Status ChunkCache::load_index() {
    DirListing ls = TRY(list_dir(dirfd_.get()));
    auto ck = IndexCheckpoint::read(dirfd_.get());
    bool rebuild = false;
    uint64_t journal_good = 0;  // where appending may resume if no checkpoint can be written
    std::unordered_set<ChunkKey, ChunkKeyHash> unconfirmed;
    if (!ck) {
        recovery_.warnings.push_back("index checkpoint unreadable (" + ck.error().str() +
                                     "): rebuilding the index from the segments");
        rebuild = true;
    } else if (!ck->has_value() && !ls.segments.empty()) {
        recovery_.warnings.push_back("index checkpoint missing: rebuilding the index from the segments");
        rebuild = true;
    } else if (ck->has_value()) {
        IndexCheckpoint& c = **ck;
        generation_ = c.generation;
        next_segment_ = c.next_segment;
        next_seq_ = c.next_seq;
        counters_ = c.counters;
        if (!opts_.policy)
            opts_.policy = c.policy;
        if (opts_.cache_size == 0)
            opts_.cache_size = c.cache_size;
        if (opts_.segment_bytes == 0)
            opts_.segment_bytes = c.segment_bytes;
        for (const auto& e : c.entries)
            index_insert(e);
        auto rep = IndexJournal::replay(dirfd_.get(), generation_,
                                        [&](const JournalRecord& r) { apply_journal_record(r, unconfirmed); });
        if (!rep) {
            recovery_.warnings.push_back("journal unreadable (" + rep.error().str() +
                                         "): rebuilding the index from the segments");
            rebuild = true;
        } else {
            recovery_.journal_records = rep->records;
            journal_good = rep->missing ? 0 : rep->good_bytes;
            recovery_.journal_ignored_bytes = rep->ignored_bytes;
            recovery_.journal_problem = rep->problem;
            // A clean close leaves a new checkpoint and an empty journal.
            if (rep->records > 0 || rep->ignored_bytes > 0 || rep->missing)
                recovery_.clean_shutdown = false;
            if (rep->ignored_bytes > 0)
                recovery_.warnings.push_back(fmt::format("journal: {} bytes after a torn record ignored ({})",
                                                         rep->ignored_bytes, rep->problem));
        }
    }
    if (!opts_.policy)
        opts_.policy = EvictionPolicy::lru;
    if (opts_.cache_size == 0)
        opts_.cache_size = kDefaultCacheSize;
    if (opts_.segment_bytes == 0)
        opts_.segment_bytes = std::clamp<uint64_t>(opts_.cache_size / 16, 256 << 10, 64 << 20);
    opts_.segment_bytes = opts_.segment_bytes / kRecordAlign * kRecordAlign;
    segment_bytes_ = std::max<uint64_t>(opts_.segment_bytes, kRecordAlign);

    TRY_VOID(load_segments(ls.segments));
    if (rebuild) {
        index_.clear();
        unconfirmed.clear();
        recovery_.clean_shutdown = false;
        recovery_.rebuilt_from_segments = true;
        TRY_VOID(rebuild_from_segments(ls.segments));
    }
    TRY_VOID(validate_entries(unconfirmed));
    TRY_VOID(load_snapshots());
    if (!recovery_.clean_shutdown && !opts_.read_only) {
        counters_.recoveries++;
        counters_.dropped_on_recovery += recovery_.dropped;
    }
    for (const auto& w : recovery_.warnings)
        log_warn(w);
    if (opts_.read_only)
        return {};
    std::lock_guard lk(mu_);
    Status st = write_checkpoint_locked();
    if (!st) {
        // Usually a full disk. Without a new checkpoint the old one and its journal stay
        // the truth: go on appending to that journal (if there is one to go on with).
        if (rebuild || journal_good == 0)
            return st;
        journal_ = TRY_CTX(IndexJournal::reopen(dirfd_.get(), generation_, journal_good),
                           "after failing to {}", st.error().str());
        recovery_.kept_old_checkpoint = true;
        recovery_.warnings.push_back("could not write a new checkpoint (" + st.error().str() +
                                     "): continuing with the old one");
        log_warn(recovery_.warnings.back());
        return {};
    }
    return remove_stale_files();
}

Status ChunkCache::load_segments(const std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) {
        auto f = SegmentFile::open(dirfd_.get(), id, false, opts_.direct_io);
        if (!f)
            return std::unexpected(std::move(f.error()));
        Segment s;
        s.size = TRY((*f)->file_size());
        s.file = std::move(*f);
        segments_.emplace(id, std::move(s));
        next_segment_ = std::max(next_segment_, id + 1);
    }
    return {};
}

Status ChunkCache::rebuild_from_segments(const std::vector<uint32_t>& ids) {
    // Records start on 4096-byte boundaries: try a header at each one, and skip a whole
    // record when it checks out. A torn or half-written record fails its checksums and
    // the scan moves on to the next boundary.
    AlignedBuffer buf(kMaxRecordBytes);
    for (uint32_t id : ids) {
        Segment& s = segments_.at(id);
        uint64_t pos = 0;
        while (pos + kRecordAlign <= s.size) {
            std::span<uint8_t> head(buf.data(), kRecordAlign);
            TRY_VOID(s.file->read_at(pos, head));
            auto h = parse_record_header(head);
            uint64_t rec = h ? record_bytes(h->stored_size) : 0;
            if (h && pos + rec <= s.size) {
                TRY_VOID(s.file->read_at(pos, std::span<uint8_t>(buf.data(), rec)));
                if (check_stored(*h, std::span<const uint8_t>(buf.data() + kRecordHeaderBytes, h->stored_size))) {
                    IndexEntry e;
                    e.key = h->key;
                    e.segment = id;
                    e.offset = pos;
                    e.stored_size = h->stored_size;
                    e.raw_size = h->raw_size;
                    // Nothing says whether the remote has it: ask again (safe).
                    e.dirty = opts_.mode != CacheMode::standalone;
                    e.seq = next_seq_;
                    index_insert(e);
                    pos += rec;
                    continue;
                }
            }
            pos += kRecordAlign;
        }
    }
    return {};
}

Status ChunkCache::validate_entries(const std::unordered_set<ChunkKey, ChunkKeyHash>& unconfirmed) {
    AlignedBuffer buf;
    for (auto it = index_.begin(); it != index_.end();) {
        const IndexEntry& e = it->second.e;
        auto seg = segments_.find(e.segment);
        uint64_t rec = record_bytes(e.stored_size);
        std::string why;
        if (seg == segments_.end())
            why = "its segment file is gone";
        else if (e.offset % kRecordAlign != 0 || e.offset + rec > seg->second.size)
            why = "its segment file ends before it";
        else if (e.raw_size == 0 || e.raw_size > kMaxChunkBytes)
            why = "its index entry is malformed";
        else if (unconfirmed.contains(e.key)) {
            // Added after the last commit: nothing guaranteed the data reached the
            // disk before the index record did. Read it back.
            recovery_.unconfirmed_checked++;
            buf.resize(rec);
            Status st = seg->second.file->read_at(e.offset, buf.span());
            if (st) {
                auto h = parse_record_header(buf.span());
                if (!h)
                    st = std::unexpected(std::move(h.error()));
                else if (h->key != e.key || h->stored_size != e.stored_size || h->raw_size != e.raw_size)
                    st = fail(EIO, "record header does not match the index");
                else
                    st = check_stored(*h, std::span<const uint8_t>(buf.data() + kRecordHeaderBytes, h->stored_size));
            }
            if (!st)
                why = st.error().str();
        }
        if (why.empty()) {
            ++it;
            continue;
        }
        recovery_.warnings.push_back(fmt::format("chunk {} (segment {:08x} offset {}) dropped: {}",
                                                 e.key.short_hex(), e.segment, e.offset, why));
        recovery_.dropped++;
        it = index_.erase(it);
    }
    // Derived state: accounting, eviction order, write-back queue.
    std::vector<std::pair<uint64_t, ChunkKey>> dirty;
    for (auto& [key, en] : index_) {
        account_add(en);
        if (en.e.dirty)
            dirty.emplace_back(en.e.seq, key);
    }
    std::sort(dirty.begin(), dirty.end());
    for (const auto& d : dirty)
        dirty_queue_.push_back(d.second);
    for (const auto& [id, s] : segments_) {
        disk_bytes_ += s.size;
        largest_segment_ = std::max(largest_segment_, s.size);
    }
    return {};
}

Status ChunkCache::load_snapshots() {
    if (!snapdir_)
        return {};
    std::vector<std::string> stale;
    auto files = TRY(SnapshotManifest::list(snapdir_.get(), &stale));
    for (const auto& f : files) {
        // A manifest is written atomically, so an unreadable one is damage, not a
        // crash. Refusing to open is the only safe answer: not knowing which chunks it
        // pins, any eviction could take one of them.
        SnapshotManifest m = TRY_CTX(SnapshotManifest::read(snapdir_.get(), f),
                                     "remove or restore it to use the cache");
        uint64_t missing = 0;
        for (const auto& k : m.keys) {
            auto it = index_.find(k);
            if (it == index_.end())
                missing++;
            else
                it->second.pins++;
        }
        if (missing)
            recovery_.warnings.push_back(
                fmt::format("snapshot '{}': {} of its {} chunks are not in the cache", m.name, missing, m.keys.size()));
        snapshots_[m.name] = std::move(m.keys);
    }
    for (auto& [key, en] : index_)
        update_evictable(en);
    if (!opts_.read_only)
        for (const auto& n : stale)
            if (ends_with(n, ".tmp") && ::unlinkat(snapdir_.get(), n.c_str(), 0) == 0)
                recovery_.stale_files_removed++;
    return {};
}

Status ChunkCache::remove_stale_files() {
    // Runs after the new checkpoint is durable: nothing can refer to these any more.
    DirListing ls = TRY(list_dir(dirfd_.get()));
    auto unlink = [&](const std::string& n) {
        if (::unlinkat(dirfd_.get(), n.c_str(), 0) == 0)
            recovery_.stale_files_removed++;
    };
    for (uint64_t g : ls.journals)
        if (g != generation_)
            unlink(IndexJournal::file_name(g));
    for (const auto& t : ls.temps)
        unlink(t);
    for (auto it = segments_.begin(); it != segments_.end();) {
        if (it->second.live == 0 && it->second.inflight == 0 && it->first != active_) {
            disk_bytes_ -= it->second.size;
            unlink(SegmentFile::file_name(it->first));
            it = segments_.erase(it);
        } else {
            ++it;
        }
    }
    return fsync_dir(dirfd_.get());
}

Status ChunkCache::write_checkpoint_locked() {
    // The checkpoint points at records in the segments: they must be on the disk
    // before it is.
    for (auto& [id, s] : segments_)
        if (s.unsynced) {
            TRY_VOID(s.file->sync());
            s.unsynced = false;
        }
    IndexCheckpoint c;
    c.generation = generation_ + 1;
    c.next_segment = next_segment_;
    c.policy = *opts_.policy;
    c.cache_size = opts_.cache_size;
    c.segment_bytes = opts_.segment_bytes;
    c.next_seq = next_seq_;
    c.counters = counters_;
    c.entries.reserve(index_.size());
    for (const auto& [key, en] : index_)
        c.entries.push_back(en.e);
    // The new journal exists (empty, durable) before the checkpoint naming it does.
    IndexJournal j = TRY(IndexJournal::create(dirfd_.get(), c.generation));
    TRY_VOID(c.write(dirfd_.get()));
    uint64_t old = generation_;
    generation_ = c.generation;
    journal_ = std::move(j);
    since_commit_ = 0;
    if (::unlinkat(dirfd_.get(), IndexJournal::file_name(old).c_str(), 0) != 0 && errno != ENOENT)
        log_warn(fmt::format("remove old journal: {}", std::strerror(errno)));
    return {};
}

Status ChunkCache::close() {
    if (closed_)
        return {};
    closed_ = true;
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable())
        writer_.join();
    {
        std::lock_guard lk(pool_mu_);
        pool_stop_ = true;
    }
    pool_cv_.notify_all();
    for (auto& t : helpers_)
        t.join();
    helpers_.clear();
    if (opts_.read_only)
        return {};
    std::lock_guard lk(mu_);
    Status st = commit_locked();
    if (st)
        st = write_checkpoint_locked();
    // Whatever happened, this object is done with the directory: let the next owner in.
    lockfd_.reset();
    return st;
}

}  // namespace criu
