#include "migrate/live/migrate_source.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "criu/dump/dump.h"
#include "migrate/cache/byte_io.h"
#include "migrate/live/file_transfer.h"
#include "migrate/net/page_transfer.h"
#include "migrate/net/remote_chunks.h"

namespace criu {

namespace {

using Clock = std::chrono::steady_clock;

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

struct ScratchDir {
    std::string path;
    ~ScratchDir() {
        std::error_code ec;
        if (!path.empty())
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
                       "  \"chunks_sent\": {},\n  \"dedup_ratio\": {:.3f},\n  \"compression_ratio\": {:.3f}\n}}\n",
                       rounds.size(), r, downtime_ms, total_ms, bytes_sent, pages_sent, image_bytes, restore_ms, chunks_sent,
                       dedup, compression);
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
    if (opts.post_copy)
        return fail(ENOTSUP, "--post-copy: post-copy migration is not implemented; migrate without it");
    Endpoint ep = TRY(Endpoint::parse(opts.to));
    AuthKey key = TRY(AuthKey::load(opts.auth_key_file));
    // Blockers are found before anything is sent or frozen.
    TRY_VOID(preflight(pid, opts.base, log));

    progress.show(fmt::format("connecting to {}", ep.text));
    Channel ch = TRY_CTX(Channel::connect(ep, key, ChannelPurpose::migrate, log, opts.channel), "destination {}",
                         ep.text);
    ByteWriter begin;
    begin.u32(static_cast<uint32_t>(pid));
    begin.u32(0);
    TRY_VOID(ch.send(MsgType::migrate_begin, begin.bytes()));
    TRY_VOID(ch.expect(MsgType::ready));

    char tmpl[] = "/tmp/criu-migrate-XXXXXX";
    if (!::mkdtemp(tmpl))
        return fail_errno("cannot create a scratch directory");
    ScratchDir scratch{tmpl};

    Options dopts = opts.base;
    dopts.images_dir = scratch.path;
    dopts.leave_running = false;
    dopts.page_server = false;
    dopts.stats_json.clear();
    dopts.dry_run = false;

    // --cache-dir: pages become content-addressed chunks in the local SSD cache, written
    // through to the destination's cache, which is asked first: a chunk it has (from an
    // earlier migration, another process, a zero chunk) never crosses the wire again.
    std::unique_ptr<NetChunkRemote> remote;
    std::unique_ptr<ChunkCache> cache;
    if (!opts.cache_dir.empty()) {
        remote = std::make_unique<NetChunkRemote>(ch);
        ChunkCacheOptions co;
        co.mode = CacheMode::writethrough;
        co.remote = remote.get();
        co.log = &log;
        cache = TRY_CTX(ChunkCache::open(opts.cache_dir, co), "--cache-dir {}", opts.cache_dir);
    }

    MigrateRound last;
    last.frozen = true;
    Clock::time_point t_frozen{}, t_round = Clock::now();
    uint64_t bytes_before = ch.bytes_sent();
    DumpHooks hooks;
    hooks.on_frozen = [&] { t_frozen = Clock::now(); };
    hooks.page_sinks = [&](int64_t id, const PageWriterOptions& o) -> Expected<std::unique_ptr<PageSink>> {
        auto inner = cache ? TRY(CachedPageSink::open(ch, *cache, id, o)) : TRY(RemotePageSink::open(ch, id, o));
        return std::unique_ptr<PageSink>(std::make_unique<CountingSink>(std::move(inner), last, progress));
    };
    hooks.before_release = [&]() -> Status {
        std::lock_guard lk(ch.mutex());  // the cache's writer may share the channel
        stats.image_bytes = TRY(send_image_files(ch, scratch.path));
        progress.show("restoring on the destination");
        auto t_restore = Clock::now();
        TRY_VOID(ch.send(MsgType::restore, {}));
        Message m = TRY_CTX(ch.expect(MsgType::restored, opts.restore_timeout_ms), "restore on {}", ep.text);
        stats.restore_ms = ms_since(t_restore);
        ByteReader r(m.payload);
        uint32_t rpid = 0;
        if (!r.u32(rpid) || r.left())
            return fail(EBADMSG, "malformed restored message");
        log.info("migrate", "pid {} restored on {} as pid {} and held; killing the source", pid, ep.text, rpid);
        return {};
    };
    Status dumped = run_dump(dopts, log, hooks);
    if (!dumped) {
        progress.end();
        ch.send_error(dumped.error());
        dumped.error().add_context(fmt::format("migrating pid {} to {} (the process runs on here)", pid, ep.text));
        return std::unexpected(std::move(dumped.error()));
    }
    // The source is gone: from here on, the destination's copy is the only one.
    std::unique_lock lk(ch.mutex());
    Status committed = ch.send(MsgType::commit, {});
    if (committed) {
        auto done = ch.expect(MsgType::done);
        if (!done)
            committed = std::unexpected(std::move(done.error()));
    }
    progress.end();
    if (!committed) {
        committed.error().add_context(fmt::format(
            "pid {} was restored on {} and killed here, but the destination did not confirm that it released it", pid,
            ep.text));
        return std::unexpected(std::move(committed.error()));
    }
    last.ms = ms_since(t_round);
    last.bytes = ch.bytes_sent() - bytes_before;
    stats.rounds.push_back(last);
    stats.downtime_ms = ms_since(t_frozen);
    stats.pages_sent = last.pages;
    stats.page_bytes_raw = last.pages * 4096;
    if (remote) {
        stats.chunk_raw_bytes_sent = remote->raw_bytes_sent();
        stats.chunk_stored_bytes_sent = remote->stored_bytes_sent();
        stats.chunks_sent = remote->chunks_sent();
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
