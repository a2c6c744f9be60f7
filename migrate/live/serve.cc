#include "migrate/live/serve.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "images/image_dir.h"
#include "migrate/cache/byte_io.h"
#include "images/page_reader.h"
#include "migrate/live/file_transfer.h"
#include "migrate/live/lazy_filler.h"
#include "migrate/live/post_copy.h"
#include "migrate/net/page_transfer.h"
#include "migrate/net/remote_chunks.h"
#include "restore/restore.h"

namespace criu {

namespace {

std::atomic<int> g_stop{0};  // set by SIGINT/SIGTERM: the signal handler can only touch a flag
void on_stop(int sig) { g_stop = sig; }

bool keep_waiting() {
    // Reap restored processes that ended (they are our children until we exit).
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    return g_stop == 0;
}

// Test hook: CRIU_SERVE_DIE_AFTER_BYTES=N makes the server kill itself with SIGKILL once it
// has received N bytes in a session, to test "the destination dies mid-stream" exactly.
uint64_t die_after_bytes() {
    const char* s = std::getenv("CRIU_SERVE_DIE_AFTER_BYTES");
    return s ? std::strtoull(s, nullptr, 10) : 0;
}
// And CRIU_SERVE_DIE_AFTER_FILL_PAGES=N: the lazy filler stops its background filling at N
// pages, and the server dies right after it let the process run (the sentinel's case).
uint64_t die_after_fill_pages() {
    const char* s = std::getenv("CRIU_SERVE_DIE_AFTER_FILL_PAGES");
    return s ? std::strtoull(s, nullptr, 10) : 0;
}

void remove_tree(const std::string& path, Log& log) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec)
        log.warn("serve", "cannot remove {}: {}", path, ec.message());
}

// One migration on an authenticated channel. Returns the restored pid.
Expected<pid_t> receive_one(Channel& ch, const ServeOptions& opts, const std::string& incoming, int seq, Log& log) {
    Message begin = TRY(ch.expect(MsgType::migrate_begin));
    ByteReader br(begin.payload);
    uint32_t pid = 0, flags = 0;
    if (!br.u32(pid) || !br.u32(flags) || br.left() || pid == 0 || pid > 4194304)
        return fail(EBADMSG, "malformed migrate_begin");
    if (flags & ~kMigrateKnownFlags)
        return failf(ENOTSUP, "migrate_begin: unknown flags {:#x} (a newer source?)", flags & ~kMigrateKnownFlags);
    const bool lazy = flags & kMigrateLazyRestore;
    const bool post_copy = flags & kMigratePostCopy;
    if (post_copy && !lazy)
        return fail(EPROTO, "migrate_begin: post-copy without a lazy restore");
    std::string stage = fmt::format("{}/{}.{}.{}", incoming, pid, ::getpid(), seq);
    if (::mkdir(stage.c_str(), 0700) < 0)
        return fail_errno("cannot create {}", stage);
    // Whatever happens from here, nothing of this attempt stays unless it ends restored.
    struct Cleanup {
        std::string path;
        Log& log;
        ~Cleanup() { remove_tree(path, log); }
    } cleanup{stage, log};
    log.info("serve", "{}: migration of pid {} into {}", ch.peer(), pid, stage);
    TRY_VOID(ch.send(MsgType::ready, {}));

    // The image sets of the pre-copy rounds and the final one, each in its own directory
    // (their inventories name the previous one as parent, "../<name>"); without image_set
    // messages everything lands in the staging directory itself.
    struct Set {
        std::string path;
        std::unique_ptr<ImageDir> dir;
        std::unique_ptr<PageReceiver> pages;
        std::unique_ptr<FileReceiver> files;
    };
    std::vector<Set> sets;
    auto open_set = [&](const std::string& path) -> Status {
        if (!sets.empty()) {
            const Set& prev = sets.back();
            if (!prev.pages->idle())
                return fail(EPROTO, "image_set in the middle of a process's pages");
            if (prev.files->files() || prev.pages->pages_received())  // the unused base stays empty
                TRY_VOID_CTX(prev.files->check_complete(), "image set {}", prev.path);
        }
        Set s;
        s.path = path;
        s.dir = std::make_unique<ImageDir>(TRY(ImageDir::open(path)));
        // Staging images live only until the process runs here and its memory is in: no fsync
        // (a crash of this host loses the process anyway). O_DIRECT stays: buffered writes
        // into fresh page cache cost 4x the socket's copy here (perf; MACHINE-LIMITS.md).
        s.pages = std::make_unique<PageReceiver>(*s.dir, log, PageReceiverOptions{.sync = false, .writer_thread = true});
        s.files = std::make_unique<FileReceiver>(s.dir->fd());
        sets.push_back(std::move(s));
        return {};
    };
    TRY_VOID(open_set(stage));
    ChunkReceiver chunks(opts.cache_dir + "/chunks", log);
    uint64_t die_after = die_after_bytes();
    for (;;) {
        Message m = TRY(ch.recv());
        if (die_after && ch.bytes_received() > die_after) {
            log.warn("serve", "CRIU_SERVE_DIE_AFTER_BYTES: dying now");
            ::kill(::getpid(), SIGKILL);
        }
        Set& cur = sets.back();
        if (m.type == MsgType::error)
            return std::unexpected(error_from_payload(m.payload, ch.peer()));
        if (m.type == MsgType::restore)
            break;
        if (m.type == MsgType::image_set) {
            ByteReader r(m.payload);
            std::string name;
            if (!r.str(name, 64) || r.left() || !FileReceiver::valid_name(name) || sets.size() > 64)
                return fail(EBADMSG, "malformed image_set");
            std::string path = stage + "/" + name;
            if (::mkdir(path.c_str(), 0700) < 0)
                return fail_errno("image set {}", path);
            TRY_VOID(open_set(path));
            continue;
        }
        if (m.type == MsgType::file_data) {
            TRY_VOID(cur.files->handle(m));
            continue;
        }
        if (TRY(chunks.handle(ch, m, *cur.pages)))
            continue;
        if (!TRY(cur.pages->handle(ch, m)))
            return failf(EPROTO, "unexpected {} message during the transfer", msg_type_name(m.type));
        ch.recycle(std::move(m.payload));  // empty when the writer thread took it
        ch.recycle(cur.pages->spare_buffer());
    }
    Set& last = sets.back();
    if (!last.pages->idle())
        return fail(EPROTO, "restore asked in the middle of a process's pages");
    TRY_VOID(last.files->check_complete());
    // Only the last set may owe pages (a later set naming a hole as its parent's would be wrong).
    for (size_t i = 0; i + 1 < sets.size(); i++)
        if (!sets[i].pages->remote_ranges().empty())
            return failf(EPROTO, "image set {}: post-copy pages before the last set", sets[i].path);
    if (!post_copy && !last.pages->remote_ranges().empty())
        return fail(EPROTO, "post-copy pages in a migration that did not ask for post-copy");
    log.info("serve", "{}: {} image set(s), the last with {} files ({} bytes) and {} pages; restoring from {}",
             ch.peer(), sets.size(), last.files->files(), last.files->bytes(), last.pages->pages_received(), last.path);

    Options ro = opts.base;
    ro.images_dir = last.path;
    ro.restore_detached = true;
    ro.pidfile.clear();
    ro.stats_json.clear();
    ro.lazy_pages = lazy;
    RestoreHooks hooks;
    std::chrono::steady_clock::time_point t_commit{};
    // Lazy restore: only the non-memory state is restored inside the pause; the anonymous
    // memory is filled by `filler` from the image chain here, faults first, while the process
    // runs (lazy_filler.h). Declared after `cleanup`: the images stay until it is done.
    // Post-copy: the pages the source still holds are fetched through `link` by the filler's
    // thread, which owns the channel's reading side from its first process on (post_copy.h).
    PostCopyLink link(ch);
    LazyFiller filler(log, die_after_fill_pages());
    if (post_copy)
        filler.watch(ch.fd(), [&] { return link.on_readable(); });
    ImageDir last_dir = TRY(ImageDir::open(last.path));
    if (lazy)
        hooks.on_lazy = [&](pid_t p, UniqueFd uffd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) -> Status {
            auto reader = std::make_shared<PageReader>(TRY_CTX(PageReader::open(last_dir, p), "pid {}", p));
            const auto& all_remote = last.pages->remote_ranges();
            auto rit = all_remote.find(p);
            RangeList remote = rit == all_remote.end() ? RangeList{} : rit->second;
            LazyTracker t = TRY(post_copy_tracker(*reader, ranges, remote, p));
            uint64_t nremote = 0;
            for (const auto& [a, b] : remote)
                nremote += (b - a) / 4096;
            log.info("serve", "pid {}: {} pages in {} lazy ranges filled after the release ({} from the source)", p,
                     t.total_pages(), ranges.size(), nremote);
            return filler.add(p, std::move(uffd), std::move(t), post_copy_source(reader, std::move(remote), &link, p));
        };
    hooks.before_release = [&](pid_t restored) -> Status {
        ByteWriter w;
        w.u32(static_cast<uint32_t>(restored));
        {
            std::lock_guard lk(ch.mutex());
            TRY_VOID(ch.send(MsgType::restored, w.bytes()));
        }
        if (post_copy && filler.started())
            TRY_VOID_CTX(link.wait_commit(opts.channel.io_timeout_ms), "waiting for the source to let go of pid {}",
                         restored);
        else
            TRY_VOID_CTX(ch.expect(MsgType::commit), "waiting for the source to let go of pid {}", restored);
        t_commit = std::chrono::steady_clock::now();
        return {};
    };
    auto r = run_restore(ro, log, hooks);
    if (!r)
        return std::unexpected(std::move(r.error()));
    if (lazy) {
        filler.start_background();
        // The process runs; the source measures its pause up to here. The migration is
        // complete only once every page is in.
        {
            std::lock_guard lk(ch.mutex());
            // How long the process still waited here after the commit: the source adds it to its
            // frozen time (its own clock would also count its teardown of the old copy).
            ByteWriter rw;
            rw.u64(uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - t_commit).count()));
            TRY_VOID(ch.send(MsgType::released, rw.bytes()));
        }
        if (die_after_fill_pages()) {
            log.warn("serve", "CRIU_SERVE_DIE_AFTER_FILL_PAGES: dying now");
            ::kill(::getpid(), SIGKILL);
        }
        TRY_VOID_CTX(filler.wait(), "pid {}", pid);
        LazyFillStats fs = filler.stats();
        log.info("serve", "pid {}: every page in after {} ms ({} faults, {} pages copied, {} fetched from the source)",
                 pid, fs.fill_ms, fs.faults, fs.pages_copied, link.pages_fetched());
        ByteWriter w;
        w.u64(fs.fill_ms);
        w.u64(fs.faults);
        w.u64(fs.pages_copied);
        TRY_VOID(ch.send(MsgType::done, w.bytes()));
        return static_cast<pid_t>(pid);
    }
    TRY_VOID(ch.send(MsgType::done, {}));
    return static_cast<pid_t>(pid);
}

Status write_pidfile(const std::string& path, pid_t pid) {
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f)
        return fail_errno("cannot create {}", tmp);
    std::fprintf(f, "%d\n", pid);
    if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
        return fail_errno("cannot write {}", path);
    return {};
}

}  // namespace

Status run_serve(const ServeOptions& opts, Log& log) {
    if (opts.listen.empty())
        return fail(EINVAL, "serve: --listen ADDR:PORT is required");
    if (opts.cache_dir.empty())
        return fail(EINVAL, "serve: --cache-dir DIR is required");
    if (opts.auth_key_file.empty())
        return fail(EINVAL, "serve: --auth-key FILE is required (a server that restores processes for anyone is "
                            "never started)");
    Endpoint ep = TRY(Endpoint::parse(opts.listen));
    AuthKey key = TRY(AuthKey::load(opts.auth_key_file));
    if (::mkdir(opts.cache_dir.c_str(), 0700) < 0 && errno != EEXIST)
        return fail_errno("cannot create --cache-dir {}", opts.cache_dir);
    std::string lock_path = opts.cache_dir + "/serve.lock";
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock)
        return fail_errno("cannot open {}", lock_path);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) < 0)
        return fail_errno("{}: another criu serve uses this cache dir", lock_path);
    std::string incoming = opts.cache_dir + "/incoming";
    // What a killed predecessor left half received.
    if (::mkdir(incoming.c_str(), 0700) < 0 && errno != EEXIST)
        return fail_errno("cannot create {}", incoming);
    std::error_code ec;
    std::vector<std::string> stale;
    for (auto it = std::filesystem::directory_iterator(incoming, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
        stale.push_back(it->path().string());
    for (const auto& p : stale) {
        log.info("serve", "removing {} left by an earlier server", p);
        remove_tree(p, log);
    }

    struct sigaction sa{}, old_int{}, old_term{};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    struct Restore {
        struct sigaction a, b;
        ~Restore() {
            sigaction(SIGINT, &a, nullptr);
            sigaction(SIGTERM, &b, nullptr);
        }
    } restore_signals{old_int, old_term};
    g_stop = 0;

    UniqueFd lfd = TRY(listen_on(ep));
    log.info("serve", "listening on {} (cache dir {})", ep.text, opts.cache_dir);
    for (int seq = 0;; ++seq) {
        std::string peer;
        auto fd = accept_one(lfd.get(), -1, peer, keep_waiting);
        if (!fd) {
            if (g_stop)
                break;
            return std::unexpected(std::move(fd.error()));
        }
        auto ch = Channel::server(std::move(*fd), peer, key, ChannelPurpose::migrate, log, opts.channel);
        if (!ch) {
            log.error("serve", "connection from {} refused: {}", peer, ch.error().str());
            continue;
        }
        auto r = receive_one(*ch, opts, incoming, seq, log);
        if (r) {
            log.info("serve", "pid {} from {} runs here now", *r, peer);
            if (!opts.pidfile.empty())
                TRY_VOID(write_pidfile(opts.pidfile, *r));
        } else {
            log.error("serve", "migration from {} failed, nothing kept: {}", peer, r.error().str());
            ch->send_error(r.error());
        }
        if (opts.once)
            return r ? Status{} : Status(std::unexpected(std::move(r.error())));
    }
    log.info("serve", "stopped by signal {}", g_stop.load());
    return {};
}

}  // namespace criu
