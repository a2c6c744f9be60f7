// Crash safety: SIGKILL at random moments, a disk that fills up half-way (tmpfs, and
// RLIMIT_FSIZE), torn journal tails, lost data behind a journal record, an unreadable
// checkpoint. After each, the cache must open, serve nothing torn, lose nothing it
// acknowledged (kill -9), and keep every pinned or dirty chunk.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "migrate/cache/cache_remote.h"
#include "migrate/cache/chunk_cache.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;

namespace {

// What a child tells its parent, one fixed-size message per event (< PIPE_BUF, so
// each write is atomic and a SIGKILL never leaves half a message).
struct Msg {
    char type = 0;  // K: put acknowledged; P: snapshot pinned; r: release begins; R: released; E: error
    char pad[7] = {};
    uint64_t a = 0;  // K: data id; P/r/R: snapshot id; E: errno
    ChunkKey key;
    char text[160] = {};
};

void send(int fd, const Msg& m) {
    ssize_t n;
    do
        n = ::write(fd, &m, sizeof m);
    while (n < 0 && errno == EINTR);
}

std::vector<Msg> drain(int fd) {
    std::vector<Msg> out;
    Msg m;
    for (;;) {
        ssize_t n = ::read(fd, &m, sizeof m);
        if (n == static_cast<ssize_t>(sizeof m)) {
            out.push_back(m);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    return out;
}

// Content of data id `id`: sizes from 4 to 64 KiB, every 10th all zeros, every 7th a
// repeat of an earlier chunk's content, half of them compressible.
std::vector<uint8_t> gen(uint64_t id) {
    if (id % 10 == 9)
        return std::vector<uint8_t>(4096 * (1 + id % 16), 0);
    uint64_t src = (id % 7 == 3) ? id - 3 : id;
    return chunk_data(src, 4096 * (1 + src % 16), src % 2);
}

std::string snap_name(uint64_t id) { return "s" + std::to_string(id); }

struct Dirs {
    std::string local, remote;
};

// The child: puts chunks for ever, pins a snapshot every 16 puts and releases the one
// from two groups back, while the writer thread streams to the remote store.
[[noreturn]] void crash_child(const Dirs& dirs, int fd, uint64_t first_id) {
    ChunkCacheOptions ro;
    ro.mode = CacheMode::standalone;
    ro.cache_size = 512 << 20;
    auto store = ChunkCache::open(dirs.remote, ro);
    if (!store)
        ::_exit(10);
    CacheRemote remote(**store);
    ChunkCacheOptions o;
    o.mode = CacheMode::writeback;
    o.remote = &remote;
    o.cache_size = 8 << 20;
    // Segments of 1/8 of the cache (not the default 1/16): less headroom, so
    // compaction runs often and kills land in the middle of it.
    o.segment_bytes = 1 << 20;
    o.commit_bytes = 512 << 10;
    o.writeback_batch = 8;
    auto c = ChunkCache::open(dirs.local, o);
    if (!c)
        ::_exit(11);
    // Release what earlier runs pinned (as a migration lets go of old iterations), or
    // the cache would fill up with pinned chunks over the runs.
    for (const auto& name : (*c)->snapshots()) {
        uint64_t sid = std::stoull(name.substr(1));
        send(fd, Msg{'r', {}, sid, {}, {}});
        if (!(*c)->release_snapshot(name))
            ::_exit(16);
        send(fd, Msg{'R', {}, sid, {}, {}});
    }
    std::vector<ChunkKey> group;
    for (uint64_t id = first_id; id < first_id + 100000; id++) {
        uint64_t group_id = id / 16;
        auto data = gen(id);
        auto k = (*c)->put(data, snap_name(group_id));
        if (!k && k.error().err() == ENOSPC) {
            // Full of dirty chunks: wait for the writer, as a dump would.
            if (!(*c)->flush())
                ::_exit(12);
            k = (*c)->put(data, snap_name(group_id));
        }
        if (!k)
            ::_exit(13);
        Msg m;
        m.type = 'K';
        m.a = id;
        m.key = *k;
        send(fd, m);
        group.push_back(*k);
        // Re-read a recent chunk now and then: under LRU those survive in old segments,
        // so space comes back by compaction, and kills land in the middle of it too.
        if (id % 3 == 0 && id >= first_id + 40)
            (void)(*c)->get(hash_chunk(gen(id - 40)));
        if (id % 16 == 15) {
            if (!(*c)->pin_snapshot(snap_name(group_id), group))
                ::_exit(14);
            send(fd, Msg{'P', {}, group_id, {}, {}});
            group.clear();
            if (group_id >= 2 && (group_id - 2) * 16 >= first_id) {
                send(fd, Msg{'r', {}, group_id - 2, {}, {}});
                if (!(*c)->release_snapshot(snap_name(group_id - 2)))
                    ::_exit(15);
                send(fd, Msg{'R', {}, group_id - 2, {}, {}});
            }
        }
    }
    ::_exit(0);
}

// Runs `body(fd)` in a child, lets it acknowledge `puts` chunks (progress, not time:
// a slow machine or a sanitizer build still reaches the same states), then another
// random 0..max_ms, SIGKILLs it and returns everything it reported.
std::vector<Msg> run_and_kill(const std::function<void(int)>& body, std::mt19937& rng, size_t puts, int max_ms) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(p[0]);
        body(p[1]);
        ::_exit(0);
    }
    ::close(p[1]);
    std::vector<Msg> msgs;
    size_t acked = 0;
    bool eof = false;
    auto collect = [&] {
        Msg m;
        ssize_t n = ::read(p[0], &m, sizeof m);
        if (n == static_cast<ssize_t>(sizeof m)) {
            msgs.push_back(m);
            acked += m.type == 'K';
        } else if (n == 0) {
            eof = true;  // the child died early: its exit status says why
        }
    };
    while (acked < puts && !eof)
        collect();
    ::fcntl(p[0], F_SETFL, O_NONBLOCK);
    // Keep the pipe drained so the child never blocks on it before the kill.
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(rng() % (max_ms + 1));
    while (!eof && std::chrono::steady_clock::now() < until) {
        for (auto& x : drain(p[0]))
            msgs.push_back(x);
        struct pollfd pfd{p[0], POLLIN, 0};
        ::poll(&pfd, 1, 1);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    ::fcntl(p[0], F_SETFL, 0);
    for (auto& x : drain(p[0]))
        msgs.push_back(x);
    ::close(p[0]);
    // Any other end means the child hit an error (see its exit codes).
    INFO("child exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status)));
    REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    return msgs;
}

std::unique_ptr<ChunkCache> reopen(const std::string& dir, CacheMode mode, ChunkRemote* remote = nullptr) {
    ChunkCacheOptions o;
    o.mode = mode;
    o.remote = remote;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        FAIL("reopen " << dir << ": " << c.error().str());
    return std::move(*c);
}

}  // namespace

TEST_CASE("SIGKILL at random moments loses nothing acknowledged and serves nothing torn", "[cache][crash]") {
    CacheTempDir d;
    Dirs dirs{d.sub("local"), d.sub("remote")};
    std::mt19937 rng(20240601);
    std::map<uint64_t, ChunkKey> acked;                 // data id -> key
    std::set<uint64_t> pinned, releasing;               // snapshot ids
    uint64_t next_id = 0;
    for (int iter = 0; iter < 20; iter++) {
        CAPTURE(iter);
        // Start each run on a fresh group so group ids never straddle runs.
        uint64_t first = (next_id + 15) / 16 * 16;
        auto msgs = run_and_kill([&](int fd) { crash_child(dirs, fd, first); }, rng, 10 + rng() % 150, 20);
        for (const auto& x : msgs) {
            if (x.type == 'K') {
                acked[x.a] = x.key;
                next_id = std::max(next_id, x.a + 1);
            } else if (x.type == 'P') {
                pinned.insert(x.a);
            } else if (x.type == 'r') {
                releasing.insert(x.a);
            }
        }

        auto store = reopen(dirs.remote, CacheMode::standalone);
        auto local = reopen(dirs.local, CacheMode::writeback);  // no remote: nothing moves while we look
        // A kill -9 loses no data that reached the kernel: nothing to drop.
        CHECK(local->recovery().dropped == 0);
        CHECK(store->recovery().dropped == 0);
        auto lv = local->verify();
        auto sv = store->verify();
        CHECK(lv.problems == std::vector<std::string>{});
        CHECK(sv.problems == std::vector<std::string>{});
        // Every acknowledged chunk is here, or (only if clean) on the remote.
        for (const auto& [id, key] : acked) {
            if (ZeroKeys::instance().size_of(key))
                continue;
            ChunkCache& where = local->contains(key) ? *local : *store;
            auto data = where.get(key);
            if (!data)
                FAIL("data id " << id << ": " << data.error().str());
            CHECK(*data == gen(id));
        }
        // Every pinned snapshot (not being released) is whole in the local cache.
        auto snaps = local->snapshots();
        for (uint64_t s : pinned) {
            if (releasing.contains(s))
                continue;
            REQUIRE(std::find(snaps.begin(), snaps.end(), snap_name(s)) != snaps.end());
            for (uint64_t id = s * 16; id < s * 16 + 16; id++)
                if (!ZeroKeys::instance().size_of(acked.at(id)))
                    CHECK(local->contains(acked.at(id)));
        }
    }
    INFO("acknowledged puts across all runs: " << acked.size());
    CHECK(acked.size() > 100);

    // Finally drain everything to the remote: it ends up with every acknowledged chunk.
    auto store = reopen(dirs.remote, CacheMode::standalone);
    CacheRemote remote(*store);
    auto local = reopen(dirs.local, CacheMode::writeback, &remote);
    REQUIRE(local->flush());
    for (const auto& [id, key] : acked)
        if (!ZeroKeys::instance().size_of(key))
            CHECK(store->contains(key));
    CHECK(local->stats().counters.recoveries >= 1);
}

namespace {

std::vector<uint8_t> churn_data(uint64_t id) { return chunk_data(id, 4096 * (1 + id % 16), id % 3 == 0); }

// The child for the compaction test: a small standalone cache under constant churn,
// with every 8th chunk pinned and recent chunks re-read, so that live chunks stay
// scattered over old segments and space only comes back by compaction.
[[noreturn]] void churn_child(const std::string& dir, int fd, uint64_t first_id) {
    ChunkCacheOptions o;
    o.mode = CacheMode::standalone;
    o.cache_size = 4 << 20;
    o.commit_bytes = 256 << 10;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        ::_exit(60);
    for (const auto& name : (*c)->snapshots()) {
        uint64_t sid = std::stoull(name.substr(1));
        send(fd, Msg{'r', {}, sid, {}, {}});
        if (!(*c)->release_snapshot(name))
            ::_exit(61);
        send(fd, Msg{'R', {}, sid, {}, {}});
    }
    std::vector<ChunkKey> keep;
    for (uint64_t id = first_id;; id++) {
        uint64_t block = id / 64;
        auto k = (*c)->put(churn_data(id), id % 8 == 0 ? snap_name(block) : "");
        if (!k)
            ::_exit(62);
        send(fd, Msg{'K', {}, id, *k, {}});
        if (id % 8 == 0)
            keep.push_back(*k);
        if (id % 5 == 0 && id >= first_id + 10)
            (void)(*c)->get(hash_chunk(churn_data(id - 10)));
        if (id % 64 == 63) {
            if (!(*c)->pin_snapshot(snap_name(block), keep))
                ::_exit(63);
            send(fd, Msg{'P', {}, block, {}, {}});
            keep.clear();
            if (block >= 2 && (block - 2) * 64 >= first_id) {
                send(fd, Msg{'r', {}, block - 2, {}, {}});
                if (!(*c)->release_snapshot(snap_name(block - 2)))
                    ::_exit(64);
                send(fd, Msg{'R', {}, block - 2, {}, {}});
            }
        }
    }
}

}  // namespace

TEST_CASE("SIGKILL during eviction and compaction leaves a consistent bounded cache", "[cache][crash]") {
    CacheTempDir d;
    std::string dir = d.sub("cache");
    std::mt19937 rng(777);
    std::map<uint64_t, ChunkKey> acked;
    std::set<uint64_t> pinned, releasing;
    uint64_t next_id = 0;
    for (int iter = 0; iter < 15; iter++) {
        CAPTURE(iter);
        uint64_t first = (next_id + 63) / 64 * 64;
        auto msgs = run_and_kill([&](int fd) { churn_child(dir, fd, first); }, rng, 20 + rng() % 200, 10);
        for (const auto& x : msgs) {
            if (x.type == 'K') {
                acked[x.a] = x.key;
                next_id = std::max(next_id, x.a + 1);
            } else if (x.type == 'P') {
                pinned.insert(x.a);
            } else if (x.type == 'r') {
                releasing.insert(x.a);
            }
        }
        auto c = reopen(dir, CacheMode::standalone);
        CHECK(c->recovery().dropped == 0);
        CHECK(c->stats().disk_bytes <= (4u << 20));
        auto v = c->verify();
        CHECK(v.problems == std::vector<std::string>{});
        // Standalone: evicted chunks are simply gone. What is here must be right, and
        // every durably pinned snapshot must be whole.
        for (const auto& [id, key] : acked)
            if (c->contains(key))
                CHECK(*c->get(key) == churn_data(id));
        for (uint64_t b : pinned) {
            if (releasing.contains(b))
                continue;
            for (uint64_t id = b * 64; id < b * 64 + 64; id += 8)
                CHECK(c->contains(acked.at(id)));
        }
    }
    auto c = reopen(dir, CacheMode::standalone);
    INFO(c->stats().to_line());
    CHECK(c->stats().counters.compactions > 0);
    CHECK(c->stats().counters.evictions > 0);
}

namespace {

// Child for the disk-full tests: puts until the disk refuses, reports, checks that the
// cache still serves what it acknowledged and keeps refusing cleanly, then dies
// without closing anything (a crash right after the disk filled).
[[noreturn]] void fill_child(const std::string& dir, int fd, int expect_errno) {
    ChunkCacheOptions o;
    o.mode = CacheMode::standalone;
    o.cache_size = 64 << 20;
    o.commit_bytes = 128 << 10;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        ::_exit(20);
    std::vector<std::pair<uint64_t, ChunkKey>> done;
    for (uint64_t id = 0; id < 10000; id++) {
        auto k = (*c)->put(chunk_data(id, 16384, id % 2));
        if (k) {
            done.emplace_back(id, *k);
            send(fd, Msg{'K', {}, id, *k, {}});
            continue;
        }
        Msg e{'E', {}, static_cast<uint64_t>(k.error().err()), {}, {}};
        std::snprintf(e.text, sizeof e.text, "%s", k.error().str().c_str());
        send(fd, e);
        break;
    }
    for (int i = 0; i < 5; i++)
        if ((*c)->put(chunk_data(90000 + i, 16384)).error().err() != expect_errno)
            ::_exit(21);
    for (const auto& [id, key] : done) {
        auto g = (*c)->get(key);
        if (!g || *g != chunk_data(id, 16384, id % 2))
            ::_exit(22);
    }
    ::raise(SIGKILL);
    ::_exit(23);
}

void check_after_fill(const std::string& dir, const std::vector<Msg>& msgs, int expect_errno,
                      const char* expect_text, bool first_open_after_crash) {
    std::vector<std::pair<uint64_t, ChunkKey>> acked;
    const Msg* err = nullptr;
    for (const auto& m : msgs) {
        if (m.type == 'K')
            acked.emplace_back(m.a, m.key);
        if (m.type == 'E')
            err = &m;
    }
    REQUIRE(err != nullptr);
    CHECK(err->a == static_cast<uint64_t>(expect_errno));
    CHECK_THAT(std::string(err->text), Catch::Contains(expect_text));
    CHECK(acked.size() > 5);

    auto c = reopen(dir, CacheMode::standalone);
    if (first_open_after_crash)
        CHECK_FALSE(c->recovery().clean_shutdown);
    CHECK(c->recovery().dropped == 0);
    CHECK(c->verify().ok());
    for (const auto& [id, key] : acked)
        CHECK(*c->get(key) == chunk_data(id, 16384, id % 2));
    // And it works again.
    REQUIRE(c->put(chunk_data(123456, 16384)));
    REQUIRE(c->close());
    auto again = reopen(dir, CacheMode::standalone);
    CHECK(again->recovery().clean_shutdown);
    CHECK(again->stats().chunks == acked.size() + 1);
}

std::vector<Msg> run_child(const std::function<void(int)>& body) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(p[0]);
        body(p[1]);
        ::_exit(30);
    }
    ::close(p[1]);
    std::vector<Msg> msgs;
    Msg m;
    while (::read(p[0], &m, sizeof m) == static_cast<ssize_t>(sizeof m))
        msgs.push_back(m);
    ::close(p[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status)));
    REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    return msgs;
}

}  // namespace

TEST_CASE("disk full half-way on a 2 MiB tmpfs gives a clear error and recovers", "[cache][crash]") {
    // A private mount namespace for this test process (ctest runs each test case in its
    // own process): the tmpfs is invisible to everyone else and goes away with us.
    if (::unshare(CLONE_NEWNS) != 0) {
        WARN("unshare(CLONE_NEWNS) failed (" << std::strerror(errno) << "): needs CAP_SYS_ADMIN; skipped");
        return;
    }
    REQUIRE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
    CacheTempDir d;
    REQUIRE(::mount("criu-cache-test", d.path().c_str(), "tmpfs", 0, "size=2m") == 0);
    std::string dir = d.sub("cache");
    // Room to give back once the disk is full: 256 KiB held by a filler file.
    std::string filler = d.sub("filler");
    {
        std::vector<uint8_t> junk(256 << 10, 0xab);
        int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, junk.data(), junk.size()) == static_cast<ssize_t>(junk.size()));
        ::close(fd);
    }
    auto msgs = run_child([&](int fd) { fill_child(dir, fd, ENOSPC); });
    {
        // Still full: the cache must open (no room for a new checkpoint: it keeps the
        // old one), serve everything, and refuse puts cleanly.
        auto c = reopen(dir, CacheMode::standalone);
        CHECK(c->recovery().kept_old_checkpoint);
        CHECK(c->recovery().dropped == 0);
        CHECK(c->verify().ok());
        for (const auto& m : msgs)
            if (m.type == 'K')
                CHECK(*c->get(m.key) == chunk_data(m.a, 16384, m.a % 2));
        auto k = c->put(chunk_data(123456, 16384));  // the same put check_after_fill makes
        if (k)
            WARN("a put fitted into the last free bytes");
        else
            CHECK(k.error().err() == ENOSPC);
    }
    REQUIRE(::unlink(filler.c_str()) == 0);
    check_after_fill(dir, msgs, ENOSPC, "No space left on device", false);
    ::umount2(d.path().c_str(), MNT_DETACH);
}

TEST_CASE("RLIMIT_FSIZE half-way gives a clear error and recovers", "[cache][crash]") {
    CacheTempDir d;
    std::string dir = d.sub("cache");
    auto msgs = run_child([&](int fd) {
        // EFBIG instead of SIGXFSZ, as a full disk gives ENOSPC instead of a signal.
        ::signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl{300 << 10, 300 << 10};
        ::setrlimit(RLIMIT_FSIZE, &rl);
        fill_child(dir, fd, EFBIG);
    });
    check_after_fill(dir, msgs, EFBIG, "File too large", true);
}

TEST_CASE("a journal record with no data behind it is dropped and the rest kept", "[cache][crash]") {
    CacheTempDir d;
    std::string dir = d.sub("cache");
    auto msgs = run_child([&](int fd) {
        ChunkCacheOptions o;
        o.mode = CacheMode::standalone;
        o.commit_bytes = 1ull << 40;  // only the explicit commit below
        auto c = ChunkCache::open(dir, o);
        if (!c)
            ::_exit(40);
        for (uint64_t id = 0; id < 8; id++) {
            auto k = (*c)->put(chunk_data(id, 16384));
            if (!k)
                ::_exit(41);
            send(fd, Msg{'K', {}, id, *k, {}});
            if (id == 4 && !(*c)->commit())
                ::_exit(42);
        }
        ::raise(SIGKILL);
    });
    REQUIRE(msgs.size() == 8);
    // The last record's data "never reached the disk": its journal record did.
    std::string seg = d.sub("cache/" + SegmentFile::file_name(1));
    uint64_t size = criu::test::file_size(seg);
    {
        int fd = ::open(seg.c_str(), O_WRONLY);
        std::vector<uint8_t> zeros(4096, 0);
        REQUIRE(::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(size - 4096)) == 4096);
        ::close(fd);
    }
    auto c = reopen(dir, CacheMode::standalone);
    CHECK(c->recovery().unconfirmed_checked == 3);  // puts 5, 6, 7 came after the commit
    CHECK(c->recovery().dropped == 1);
    CHECK_FALSE(c->contains(msgs[7].key));
    for (int i = 0; i < 7; i++)
        CHECK(*c->get(msgs[i].key) == chunk_data(i, 16384));
    CHECK(c->verify().ok());
    CHECK(c->stats().counters.dropped_on_recovery == 1);
}

TEST_CASE("a torn journal tail is ignored and an unreadable checkpoint is rebuilt from the segments",
          "[cache][crash]") {
    CacheTempDir d;
    std::string dir = d.sub("local");
    std::vector<ChunkKey> keys;
    // The remote store is opened by the child and only afterwards here: one process
    // at a time per cache directory.
    auto msgs = run_child([&](int fd) {
        auto rs = criu::test::RemoteSide::open(d.sub("remote"));
        ChunkCacheOptions o;
        o.mode = CacheMode::writeback;
        o.remote = rs.remote.get();
        auto c = ChunkCache::open(dir, o);
        if (!c || !(*c)->pin_snapshot("empty", {}))
            ::_exit(50);
        for (uint64_t id = 0; id < 10; id++) {
            auto k = (*c)->put(chunk_data(id, 16384, true), "snap");
            if (!k)
                ::_exit(51);
            send(fd, Msg{'K', {}, id, *k, {}});
        }
        if (!(*c)->flush())
            ::_exit(52);
        std::vector<ChunkKey> ks;
        for (uint64_t id = 0; id < 10; id++)
            ks.push_back(hash_chunk(chunk_data(id, 16384, true)));
        if (!(*c)->pin_snapshot("snap", ks))
            ::_exit(53);
        ::raise(SIGKILL);
    });
    REQUIRE(msgs.size() == 10);
    for (const auto& m : msgs)
        keys.push_back(m.key);
    // Half a record at the end of the journal, as a kill in the middle of write() leaves.
    DIR* dh = ::opendir(dir.c_str());
    std::string journal;
    while (struct dirent* de = ::readdir(dh))
        if (std::string(de->d_name).rfind("journal-", 0) == 0)
            journal = dir + "/" + de->d_name;
    ::closedir(dh);
    REQUIRE_FALSE(journal.empty());
    {
        int fd = ::open(journal.c_str(), O_WRONLY | O_APPEND);
        REQUIRE(::write(fd, "\x01\x00\x3d\x00garbage", 11) == 11);
        ::close(fd);
    }
    {
        auto c = reopen(dir, CacheMode::writeback);
        CHECK_FALSE(c->recovery().clean_shutdown);
        CHECK(c->recovery().journal_ignored_bytes == 11);
        CHECK(c->stats().chunks == 10);
        CHECK(c->stats().dirty_chunks == 0);
        CHECK(c->stats().counters.recoveries == 1);
        CHECK(c->verify().ok());
    }
    // Now the checkpoint written by that open is damaged.
    criu::test::flip_byte(dir + "/index.ckpt", 20);
    auto rs = criu::test::RemoteSide::open(d.sub("remote"));
    auto sent = rs.remote->traffic().chunks_received;
    auto c = reopen(dir, CacheMode::writeback, rs.remote.get());
    CHECK(c->recovery().rebuilt_from_segments);
    CHECK(c->stats().chunks == 10);
    for (size_t i = 0; i < keys.size(); i++) {
        CHECK(*c->get(keys[i]) == chunk_data(i, 16384, true));
        CHECK(c->info(keys[i])->pins == 1);  // the manifest still pins them
    }
    // Rebuilt entries are dirty (nothing said the remote had them); write-back finds
    // that it does and sends nothing.
    REQUIRE(c->flush());
    CHECK(rs.remote->traffic().chunks_received == sent);
    CHECK(c->stats().counters.dedup_remote_chunks == 10);
    CHECK(c->verify().ok());
}
