#include "migrate/live/migrate_source.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "criu/dump/dump.h"
#include "migrate/cache/byte_io.h"
#include "migrate/live/cgroup_throttle.h"
#include "migrate/live/convergence.h"
#include "migrate/live/file_transfer.h"
#include "migrate/live/post_copy.h"
#include "migrate/net/page_transfer.h"
#include "migrate/net/remote_chunks.h"

namespace criu {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxRounds = 30;

// utime + stime of the process (all its threads), in seconds; -1 if unreadable.
double process_cpu_seconds(pid_t pid) {
    std::ifstream f(fmt::format("/proc/{}/stat", pid));
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t rp = s.rfind(')');
    if (rp == std::string::npos)
        return -1;
    std::istringstream in(s.substr(rp + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; i++) {  // fields 3.. after "pid (comm)"
        if (i == 14)
            utime = std::strtoull(field.c_str(), nullptr, 10);
        if (i == 15)
            stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

uint64_t ms_since(Clock::time_point t) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// The progress line: on a terminal only, overwritten in place.
struct Progress {
    bool on;
    void show(const std::string& s) const {
        if (on)
            std::fprintf(stderr, "\r\033[Kmigrate: %s", s.c_str());
    }
    void end() const {
        if (on)
            std::fprintf(stderr, "\r\033[K");
    }
};

// Counts what a PageSink sends so that the rounds can be reported.
class CountingSink : public PageSink {
public:
    CountingSink(std::unique_ptr<PageSink> inner, MigrateRound& round, const Progress& progress)
        : inner_(std::move(inner)), round_(round), progress_(progress) {}
    Status add_pages(uint64_t vaddr, const void* data, size_t nr, bool lazy) override {
        TRY_VOID(inner_->add_pages(vaddr, data, nr, lazy));
        round_.pages += nr;
        if (progress_.on && (round_.pages & 0x3fff) < nr)
            progress_.show(fmt::format("{} MiB of pages sent", round_.pages * 4096 >> 20));
        return {};
    }
    Status add_zero(uint64_t vaddr, size_t nr) override { return inner_->add_zero(vaddr, nr); }
    Status add_parent(uint64_t vaddr, size_t nr) override { return inner_->add_parent(vaddr, nr); }
    Status finish(bool sync) override { return inner_->finish(sync); }
    PageWriterStats stats() const override { return inner_->stats(); }

private:
    std::unique_ptr<PageSink> inner_;
    MigrateRound& round_;
    const Progress& progress_;
};

// Pages to the destination and to the local copy of the same image set: the next round's
// pre-dump or dump validates its parent set and reads its page coverage and hashes here,
// exactly as an incremental dump on one host does.
class TeeSink : public PageSink {
public:
    TeeSink(std::unique_ptr<PageSink> local, std::unique_ptr<PageSink> remote)
        : local_(std::move(local)), remote_(std::move(remote)) {}
    Status add_pages(uint64_t vaddr, const void* data, size_t nr, bool lazy) override {
        TRY_VOID(local_->add_pages(vaddr, data, nr, lazy));
        return remote_->add_pages(vaddr, data, nr, lazy);
    }
    Status add_zero(uint64_t vaddr, size_t nr) override {
        TRY_VOID(local_->add_zero(vaddr, nr));
        return remote_->add_zero(vaddr, nr);
    }
    Status add_parent(uint64_t vaddr, size_t nr) override {
        TRY_VOID(local_->add_parent(vaddr, nr));
        return remote_->add_parent(vaddr, nr);
    }
    Status finish(bool sync) override {
        TRY_VOID(local_->finish(sync));
        return remote_->finish(sync);
    }
    PageWriterStats stats() const override { return remote_->stats(); }

private:
    std::unique_ptr<PageSink> local_, remote_;
};

struct ScratchDir {
    std::string path;
    bool keep = false;
    ~ScratchDir() {
        std::error_code ec;
        if (!path.empty() && !keep)
            std::filesystem::remove_all(path, ec);
    }
};

}  // namespace

std::string MigrateStats::to_json() const {
    std::string r = "[";
    for (size_t i = 0; i < rounds.size(); ++i) {
        const MigrateRound& x = rounds[i];
        r += fmt::format("{}\n    {{\"round\": {}, \"pages\": {}, \"bytes\": {}, \"ms\": {}, \"frozen\": {}}}",
                         i ? "," : "", i + 1, x.pages, x.bytes, x.ms, x.frozen ? "true" : "false");
    }
    r += "\n  ]";
    // Without the cache every page crosses the wire raw: both ratios are 1.
    double dedup = 1.0, compression = 1.0;
    // (page bytes / raw bytes of the chunks sent; raw / stored bytes of the chunks sent)
    if (cache_used && chunk_raw_bytes_sent) {
        dedup = double(page_bytes_raw) / double(chunk_raw_bytes_sent);
        compression = double(chunk_raw_bytes_sent) / double(std::max<uint64_t>(1, chunk_stored_bytes_sent));
    } else if (cache_used && page_bytes_raw) {
        dedup = double(page_bytes_raw) / 4096.0;  // nothing sent: as if one page had been
    }
    return fmt::format("{{\n  \"iterations\": {},\n  \"rounds\": {},\n  \"downtime_ms\": {},\n  \"total_ms\": {},\n"
                       "  \"bytes_sent\": {},\n  \"pages_sent\": {},\n  \"image_bytes\": {},\n  \"restore_ms\": {},\n"
                       "  \"chunks_sent\": {},\n  \"dedup_ratio\": {:.3f},\n  \"compression_ratio\": {:.3f},\n"
                       "  \"lazy_restore\": {},\n  \"fill_ms\": {},\n  \"fill_faults\": {},\n"
                       "  \"post_copy\": {},\n  \"postcopy_pages\": {},\n  \"postcopy_requests\": {},\n"
                       "  \"postcopy_pages_served\": {},\n  \"postcopy_bytes\": {},\n"
                       "  \"throttled\": {},\n  \"throttle_min_cpu_pct\": {:.1f},\n  \"throttle_rounds\": {}\n}}\n",
                       rounds.size(), r, downtime_ms, total_ms, bytes_sent, pages_sent, image_bytes, restore_ms, chunks_sent,
                       dedup, compression, lazy_restore ? "true" : "false", fill_ms, fill_faults,
                       post_copy ? "true" : "false", postcopy_pages, postcopy_requests, postcopy_pages_served,
                       postcopy_bytes, throttled ? "true" : "false", throttle_min_cpu_pct, throttle_rounds);
}

Expected<MigrateStats> run_migrate(const MigrateOptions& opts, Log& log) {
    auto t_start = Clock::now();
    MigrateStats stats;
    Progress progress{opts.base.progress};
    const pid_t pid = opts.base.pid;
    if (pid <= 0)
        return failf(EINVAL, "no process to migrate (pid {}): use -t PID", pid);
    if (opts.to.empty())
        return fail(EINVAL, "no destination: use --to ADDR:PORT");
    if (opts.auth_key_file.empty())
        return fail(EINVAL, "--auth-key FILE is required");
    if (opts.post_copy && !opts.lazy_restore)
        return fail(EINVAL, "--post-copy needs the lazy restore on the destination; drop --no-lazy-restore");
    // Test hook: CRIU_MIGRATE_MAX_ROUNDS=N caps the pre-copy rounds, so that the post-copy
    // tests do not depend on a starved writer leaving one short round without a dirty page
    // (which converges even at --max-downtime-ms 1).
    int max_rounds = opts.max_rounds;
    if (const char* mr = std::getenv("CRIU_MIGRATE_MAX_ROUNDS"))
        max_rounds = std::atoi(mr);
    if (max_rounds < 0 || max_rounds > kMaxRounds)
        return failf(EINVAL, "pre-copy rounds: {} is outside 0..{}", max_rounds, kMaxRounds);
    Endpoint ep = TRY(Endpoint::parse(opts.to));
    AuthKey key = TRY(AuthKey::load(opts.auth_key_file));
    // Blockers are found before anything is sent or frozen.
    TRY_VOID(preflight(pid, opts.base, log));

    progress.show(fmt::format("connecting to {}", ep.text));
    Channel ch = TRY_CTX(Channel::connect(ep, key, ChannelPurpose::migrate, log, opts.channel), "destination {}",
                         ep.text);
    // The dump's writer thread seals the next batch while this thread writes the last one
    // (channel.h): the socket write over veth costs about as much CPU as the encryption.
    ch.start_send_thread();
    ByteWriter begin;
    begin.u32(static_cast<uint32_t>(pid));
    // kMigratePostCopy: the last round may leave pages here (decided after the rounds).
    begin.u32((opts.lazy_restore ? kMigrateLazyRestore : 0) | (opts.post_copy ? kMigratePostCopy : 0));
    stats.lazy_restore = opts.lazy_restore;
    TRY_VOID(ch.send(MsgType::migrate_begin, begin.bytes()));
    TRY_VOID(ch.expect(MsgType::ready));

    const char* tmpdir = std::getenv("TMPDIR");
    std::string tmpl = fmt::format("{}/criu-migrate-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!::mkdtemp(tmpl.data()))
        return fail_errno("cannot create a scratch directory {}", tmpl);
    ScratchDir scratch{tmpl};

    // --cache-dir: pages become content-addressed chunks in the local SSD cache, written
    // back (or through) to the destination's cache, which is asked first: a chunk it has
    // (from an earlier migration, another process, a zero chunk) never crosses the wire
    // again. Writeback: a set's pages are named only once its chunks are there (remote_chunks.h).
    std::unique_ptr<NetChunkRemote> remote;
    std::unique_ptr<ChunkCache> cache;
    if (!opts.cache_dir.empty()) {
        remote = std::make_unique<NetChunkRemote>(ch);
        ChunkCacheOptions co;
        co.mode = opts.cache_mode;
        co.cache_size = opts.cache_size;
        co.policy = opts.cache_policy;
        co.wait_for_writeback = true;  // a full cache slows the dump to the link's pace
        co.remote = remote.get();
        co.log = &log;
        cache = TRY_CTX(ChunkCache::open(opts.cache_dir, co), "--cache-dir {}", opts.cache_dir);
    }

    // Every round is an image set of its own, here and on the destination: round-1 (a
    // pre-dump, the process runs on), round-2 ... (pre-dumps with the previous round as
    // parent: only what changed), and final (the dump, frozen), whose chain restores.
    std::string set_dir;
    MigrateRound* cur = nullptr;
    // The local copy of a set is only the next round's parent: its pagemap (what the set
    // covers), not its data, which goes straight from the process to the channel. Writing
    // 1 GiB to a scratch disk in the sender's path halved its speed. Post-copy's last set is
    // the exception: the destination fetches from it (post_copy.h).
    auto local_sink = [&](int64_t id, PageWriterOptions o, bool with_data) -> Expected<std::unique_ptr<PageSink>> {
        ImageDir local_dir = TRY(ImageDir::open(set_dir));
        if (!with_data) {
            o.layout_only = true;
            o.codec = images::CODEC_RAW;  // nothing is compressed for a hole
        }
        return ImageDirPageSink::create(local_dir, id, o);
    };
    auto sinks = [&](int64_t id, const PageWriterOptions& o) -> Expected<std::unique_ptr<PageSink>> {
        auto local = TRY(local_sink(id, o, false));
        auto far = cache ? TRY(CachedPageSink::open(ch, *cache, id, o)) : TRY(RemotePageSink::open(ch, id, o));
        auto counted = std::make_unique<CountingSink>(std::move(far), *cur, progress);
        return std::unique_ptr<PageSink>(std::make_unique<TeeSink>(std::move(local), std::move(counted)));
    };
    auto begin_set = [&](const std::string& name) -> Status {
        set_dir = scratch.path + "/" + name;
        ByteWriter w;
        w.str(name);
        std::lock_guard lk(ch.mutex());
        return ch.send(MsgType::image_set, w.bytes());
    };
    auto set_options = [&](const std::string& prev) {
        Options o = opts.base;
        o.images_dir = set_dir;
        o.work_dir = set_dir;
        o.prev_images_dir = prev.empty() ? "" : "../" + prev;
        o.leave_running = false;
        o.page_server = false;
        o.stats_json.clear();
        o.dry_run = false;
        return o;
    };

    // Pre-copy while the process runs. The controller (convergence.h) compares what the
    // last round had to send again (the pages dirtied while it ran) with the bandwidth
    // measured in that round, and stops once the rest fits the downtime target; a round that
    // no longer shrinks the dirty set by a tenth, or the last of max_rounds, means the process
    // writes as fast as we send: then it is throttled and the rounds go on, or they end.
    std::string prev;
    bool converged = false;
    stats.rounds.reserve(kMaxRounds + 1);
    // Rounds that do not converge: throttle the process's CPU through a cgroup (default
    // without --post-copy; --throttle / --no-throttle choose). Set up before anything is
    // frozen; released on every path (its destructor), leaving the source as it was.
    const bool may_throttle = opts.throttle.value_or(!opts.post_copy) && max_rounds > 0;
    std::unique_ptr<CgroupThrottle> throttle;
    if (may_throttle) {
        auto t = CgroupThrottle::create(pid, log);
        if (t)
            throttle = std::move(*t);
        else if (opts.throttle.value_or(false))
            return std::unexpected(std::move(t.error().add_context("--throttle")));
        else
            log.warn("migrate", "no throttle if pre-copy does not converge: {}", t.error().str());
    }
    ConvergenceController controller(opts.max_downtime_ms, max_rounds, throttle != nullptr);
    for (int k = 1; max_rounds > 0 && k <= ConvergenceController::kMaxRounds; ++k) {
        std::string name = fmt::format("round-{}", k);
        TRY_VOID(begin_set(name));
        stats.rounds.emplace_back();
        cur = &stats.rounds.back();
        auto t_round = Clock::now();
        uint64_t bytes0 = ch.bytes_sent();
        double cpu0 = process_cpu_seconds(pid);
        progress.show(fmt::format("round {}", k));
        DumpHooks pre;
        pre.page_sinks = sinks;
        // Exact tracking (uffd-wp) finds the changed pages; should it be lost, the next round
        // copies everything rather than every round hashing (and sending) 4.4 MiB of hashes
        // per GiB. Through the cache they stay: a rewritten page whose content did not change
        // is then recorded as in the parent rather than put again. (Without them
        // e2e.migrate.cache-writeback fails: its 16 MiB source cache evicts clean hits before
        // the round's deferred ensure() reads them; a cache-side problem, not fixed here.)
        pre.page_hashes = cache != nullptr;
        TRY_VOID_CTX(run_pre_dump(set_options(prev), log, pre), "pre-copy round {} (the process runs on here)", k);
        {
            std::lock_guard lk(ch.mutex());
            stats.image_bytes += TRY(send_image_files(ch, set_dir));
        }
        cur->ms = std::max<uint64_t>(1, ms_since(t_round));
        cur->bytes = ch.bytes_sent() - bytes0;
        prev = name;
        double bw = double(cur->bytes) / (double(cur->ms) / 1000.0);  // bytes/s, reading included
        double cpu1 = process_cpu_seconds(pid);
        auto d = controller.after_round(ConvergenceRound{cur->pages, cur->bytes, cur->ms,
                                                         cpu0 >= 0 && cpu1 >= cpu0 ? (cpu1 - cpu0) * 1000.0 / double(cur->ms) : 0});
        log.info("migrate", "round {}: {} pages, {} bytes in {} ms ({:.0f} MiB/s); the rest would take ~{:.0f} ms",
                 k, cur->pages, cur->bytes, cur->ms, bw / (1 << 20), d.rest_ms);
        using A = ConvergenceController::Action;
        if (d.action == A::converged) {
            log.info("migrate", "converged after round {}: the rest fits {} ms", k, opts.max_downtime_ms);
            converged = true;
            break;
        }
        if (d.action == A::give_up) {
            log.info("migrate", "round {} did not converge ({} pages after {}{}): stopping the rounds", k, cur->pages,
                     stats.rounds.size() >= 2 ? stats.rounds[stats.rounds.size() - 2].pages : 0,
                     controller.throttling() ? fmt::format(", throttled to {:.0f}% of a CPU", controller.cpus() * 100)
                                             : std::string());
            break;
        }
        if (d.action == A::throttle) {
            log.info("migrate", "round {} does not converge ({} pages): throttling pid {} to {:.1f}% of a CPU", k,
                     cur->pages, pid, d.cpus * 100);
            TRY_VOID_CTX(throttle->set(d.cpus), "throttling pid {} (pre-copy does not converge)", pid);
            stats.throttled = true;
            stats.throttle_min_cpu_pct = controller.min_cpus() * 100;
        }
        if (stats.throttled)
            stats.throttle_rounds++;
        else if (k >= max_rounds)
            break;
    }

    // Not converged: with --post-copy the last round sends what the destination cannot fetch
    // later (post_copy.h); its anonymous memory's pages stay here until asked for.
    const bool post = opts.post_copy && !converged;
    stats.post_copy = post;
    if (post)
        log.info("migrate", "pre-copy did not converge within {} ms: post-copy for the last round",
                 opts.max_downtime_ms);
    TRY_VOID(begin_set("final"));
    const char* die_at = std::getenv("CRIU_MIGRATE_DIE_AT_PAGE_REQUEST");  // test hook (post_copy.h)
    PostCopySource pcs(set_dir, die_at ? std::strtoull(die_at, nullptr, 10) : 0);
    stats.rounds.emplace_back();
    cur = &stats.rounds.back();
    MigrateRound& last = *cur;
    last.frozen = true;
    Options dopts = set_options(prev);
    Clock::time_point t_frozen{}, t_round = Clock::now();
    uint64_t bytes_before = ch.bytes_sent();
    DumpHooks hooks;
    hooks.page_hashes = false;
    hooks.on_frozen = [&] {
        t_frozen = Clock::now();
        // Frozen: the throttle has done its work (a failure only leaves the limit until release).
        if (throttle)
            if (Status st = throttle->lift(); !st)
                log.warn("migrate", "lifting the throttle: {}", st.error().str());
    };
    hooks.page_sinks = sinks;
    if (post)
        hooks.page_sinks = [&](int64_t id, const PageWriterOptions& o) -> Expected<std::unique_ptr<PageSink>> {
            auto local = TRY(local_sink(id, o, true));
            RangeList lazy = TRY_CTX(post_copy_ranges(pid_t(id)), "post-copy ranges of {}", id);
            auto far = TRY(RemotePageSink::open(ch, id, o));
            std::unique_ptr<RemotePageSink> rs(static_cast<RemotePageSink*>(far.release()));
            auto pc = std::make_unique<PostCopySink>(std::move(rs), std::move(lazy), &stats.postcopy_pages);
            auto counted = std::make_unique<CountingSink>(std::move(pc), *cur, progress);
            return std::unique_ptr<PageSink>(std::make_unique<TeeSink>(std::move(local), std::move(counted)));
        };
    hooks.before_release = [&]() -> Status {
        // The cache's writer may share the channel: hold it (post-copy: only while sending,
        // the answers to page requests take it too).
        std::unique_lock lk(ch.mutex());
        stats.image_bytes += TRY(send_image_files(ch, set_dir));
        progress.show("restoring on the destination");
        auto t_restore = Clock::now();
        TRY_VOID(ch.send(MsgType::restore, {}));
        if (post)
            lk.unlock();
        Message m = TRY_CTX(post ? pcs.expect(ch, MsgType::restored, opts.restore_timeout_ms)
                                 : ch.expect(MsgType::restored, opts.restore_timeout_ms),
                            "restore on {}", ep.text);
        stats.restore_ms = ms_since(t_restore);
        ByteReader r(m.payload);
        uint32_t rpid = 0;
        if (!r.u32(rpid) || r.left())
            return fail(EBADMSG, "malformed restored message");
        log.info("migrate", "pid {} restored on {} as pid {} and held; killing the source", pid, ep.text, rpid);
        return {};
    };
    // The commit goes as soon as SIGKILL reached the source (it can never run again), not
    // once its memory is torn down: that took ~0.25 s of the pause for 1 GiB.
    std::optional<Status> commit_sent;
    Clock::time_point t_commit{};
    hooks.on_killed = [&] {
        std::lock_guard lk(ch.mutex());
        commit_sent = ch.send(MsgType::commit, {});
        t_commit = Clock::now();
    };
    Status dumped = run_dump(dopts, log, hooks);
    if (!dumped) {
        progress.end();
        ch.send_error(dumped.error());
        dumped.error().add_context(fmt::format("migrating pid {} to {} (the process runs on here)", pid, ep.text));
        return std::unexpected(std::move(dumped.error()));
    }
    // The source is gone: from here on, the destination's copy is the only one.
    // Post-copy: the destination's page requests are answered until `done` (PostCopySource
    // takes the channel's lock for each answer); otherwise the channel is ours to the end.
    std::unique_lock lk(ch.mutex());
    Status committed = commit_sent ? std::move(*commit_sent) : ch.send(MsgType::commit, {});
    if (post)
        lk.unlock();
    auto expect = [&](MsgType t, int timeout_ms) {
        return post ? pcs.expect(ch, t, timeout_ms) : ch.expect(t, timeout_ms);
    };
    bool released = false;
    uint64_t bytes_at_release = 0;
    if (committed && opts.lazy_restore) {
        // The process runs on the destination from `released`; `done` once its memory is all in.
        auto rel = expect(MsgType::released, -1);
        if (!rel) {
            committed = std::unexpected(std::move(rel.error()));
        } else {
            released = true;
            // Frozen here until the commit went, then held there until `released`: not the
            // time until we read it (the old copy's teardown, ~0.25 s for 1 GiB, is in between).
            ByteReader rr(rel->payload);
            uint64_t held_us = 0;
            if (t_commit != Clock::time_point{} && rr.u64(held_us) && !rr.left())
                stats.downtime_ms = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 t_commit - t_frozen).count()) + held_us / 1000;
            else
                stats.downtime_ms = ms_since(t_frozen);
            bytes_at_release = ch.bytes_sent();
        }
        progress.show(post ? "the destination fetches the rest" : "the destination fills the memory");
    }
    if (committed) {
        auto done = expect(MsgType::done, opts.restore_timeout_ms);
        if (!done) {
            committed = std::unexpected(std::move(done.error()));
        } else if (opts.lazy_restore) {
            ByteReader r(done->payload);
            uint64_t pages_copied = 0;
            if (!r.u64(stats.fill_ms) || !r.u64(stats.fill_faults) || !r.u64(pages_copied) || r.left())
                committed = fail(EBADMSG, "malformed done message");
        }
    }
    progress.end();
    if (!committed && post) {
        // The images of the last state stay for whoever must decide what to do (the process
        // was killed on both sides; the destination's copy may have run on from it a while).
        scratch.keep = true;
        committed.error().add_context(fmt::format("post-copy of pid {} to {} failed after the commit point; the "
                                                  "process is lost (its frozen state is kept in {})", pid, ep.text,
                                                  scratch.path));
        return std::unexpected(std::move(committed.error()));
    }
    if (!committed) {
        if (released)
            committed.error().add_context(fmt::format(
                "pid {} ran on {} but its memory could not all be filled there (the destination kills it rather "
                "than let it read zero pages; the process is lost)", pid, ep.text));
        else
            committed.error().add_context(fmt::format(
                "pid {} was restored on {} and killed here, but the destination did not confirm that it released it",
                pid, ep.text));
        return std::unexpected(std::move(committed.error()));
    }
    last.ms = ms_since(t_round);
    last.bytes = (bytes_at_release ? bytes_at_release : ch.bytes_sent()) - bytes_before;
    if (post) {
        last.pages -= std::min(last.pages, stats.postcopy_pages);  // announced, not sent in the round
        stats.postcopy_bytes = ch.bytes_sent() - bytes_at_release;
        stats.postcopy_requests = pcs.requests();
        stats.postcopy_pages_served = pcs.pages_served();
    }
    if (!opts.lazy_restore)
        stats.downtime_ms = ms_since(t_frozen);
    for (const MigrateRound& x : stats.rounds)
        stats.pages_sent += x.pages;
    stats.page_bytes_raw = stats.pages_sent * 4096;
    if (remote) {
        stats.chunk_raw_bytes_sent = remote->raw_bytes_sent();
        stats.chunk_stored_bytes_sent = remote->stored_bytes_sent();
        stats.chunks_sent = remote->chunks_sent();
    }
    if (throttle) {
        // The source was killed: its processes leave the throttle cgroup as they exit.
        if (Status st = throttle->release(); !st)
            log.warn("migrate", "the throttle cgroup: {}", st.error().str());
    }
    (void)ch.send(MsgType::bye, {});
    stats.bytes_sent = ch.bytes_sent();
    stats.cache_used = cache != nullptr;
    stats.total_ms = ms_since(t_start);
    log.info("migrate", "pid {} migrated to {}: {} pages, {} bytes sent, downtime {} ms, total {} ms", pid, ep.text,
             stats.pages_sent, stats.bytes_sent, stats.downtime_ms, stats.total_ms);
    if (!opts.base.stats_json.empty()) {
        std::ofstream f(opts.base.stats_json, std::ios::trunc);
        f << stats.to_json();
        if (!f)
            log.warn("migrate", "cannot write {}", opts.base.stats_json);
    }
    return stats;
}

}  // namespace criu
