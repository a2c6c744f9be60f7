// The trackers on a real process: a forked victim changes its memory on command (writes,
// MADV_DONTNEED, a new mmap, an mremap) while it runs, and each collect() must report exactly
// what it did inside the victim's own regions (its stack and libc data change too, so only the
// regions are compared).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "migrate/track/dirty_tracker.h"
#include "migrate/track/uffd_tracker.h"

using namespace criu;

namespace {

constexpr uint64_t P = 4096;
constexpr size_t kRegionPages = 64;
constexpr size_t kMovablePages = 8;

enum Op : uint64_t { kWrite = 1, kDontneed, kWriteDontneed, kMmap, kMremap, kFreePageout, kGuard, kExit };

// Not in the 6.1 headers (include/uapi/asm-generic/mman-common.h: 5.4 and 6.13).
constexpr int kMadvPageout = 21;
constexpr int kMadvGuardInstall = 102;
struct Cmd {
    uint64_t op, a, b;
};

// The victim: a 64-page region (all pages written before tracking starts) and an 8-page
// region it may move. Replies to each command with one u64.
[[noreturn]] void victim(int in, int out) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    auto* region = static_cast<uint8_t*>(
        mmap(nullptr, kRegionPages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    auto* movable = static_cast<uint8_t*>(
        mmap(nullptr, kMovablePages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    std::memset(region, 0x11, kRegionPages * P);
    std::memset(movable, 0x22, kMovablePages * P);
    uint64_t addrs[2] = {uint64_t(region), uint64_t(movable)};
    if (write(out, addrs, sizeof addrs) != sizeof addrs)
        _exit(1);
    Cmd c;
    while (read(in, &c, sizeof c) == sizeof c) {
        uint64_t reply = 0;
        switch (c.op) {
        case kWrite:  // pages [a, b) of the region
            for (uint64_t i = c.a; i < c.b; ++i)
                region[i * P + 7] ^= 0xff;
            break;
        case kDontneed:
            madvise(region + c.a * P, (c.b - c.a) * P, MADV_DONTNEED);
            break;
        case kWriteDontneed:
            for (uint64_t i = c.a; i < c.b; ++i)
                region[i * P] = 1;
            madvise(region + c.a * P, (c.b - c.a) * P, MADV_DONTNEED);
            break;
        case kFreePageout: {
            // Lazily freed, then reclaimed at once: the clean lazy-free pages are discarded.
            // Replies 1 when page a reads as zero afterwards (it was discarded).
            madvise(region + c.a * P, (c.b - c.a) * P, MADV_FREE);
            madvise(region + c.a * P, (c.b - c.a) * P, kMadvPageout);
            reply = region[c.a * P + 7] == 0;
            break;
        }
        case kGuard:  // replies 0, or errno when the kernel has no guard regions
            reply = madvise(region + c.a * P, (c.b - c.a) * P, kMadvGuardInstall) == 0 ? 0 : uint64_t(errno);
            break;
        case kMmap: {
            auto* p = static_cast<uint8_t*>(
                mmap(nullptr, c.a * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
            p[0] = 5;
            reply = uint64_t(p);
            break;
        }
        case kMremap: {
            // Reserve a new place, then move the region there.
            void* to = mmap(nullptr, kMovablePages * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            movable = static_cast<uint8_t*>(
                mremap(movable, kMovablePages * P, kMovablePages * P, MREMAP_MAYMOVE | MREMAP_FIXED, to));
            reply = uint64_t(movable);
            break;
        }
        case kExit:
            _exit(0);
        }
        if (write(out, &reply, sizeof reply) != sizeof reply)
            _exit(1);
    }
    _exit(0);
}

struct Victim {
    pid_t pid = -1;
    int to = -1, from = -1;
    uint64_t region = 0, movable = 0;

    Victim() {
        int a[2], b[2];
        REQUIRE(pipe(a) == 0);
        REQUIRE(pipe(b) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(a[1]);
            close(b[0]);
            victim(a[0], b[1]);
        }
        close(a[0]);
        close(b[1]);
        to = a[1];
        from = b[0];
        uint64_t addrs[2];
        REQUIRE(read(from, addrs, sizeof addrs) == sizeof addrs);
        region = addrs[0];
        movable = addrs[1];
    }
    ~Victim() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        close(to);
        close(from);
    }
    uint64_t run(Op op, uint64_t a = 0, uint64_t b = 0) {
        Cmd c{op, a, b};
        REQUIRE(write(to, &c, sizeof c) == sizeof c);
        uint64_t reply = 0;
        REQUIRE(read(from, &reply, sizeof reply) == sizeof reply);
        return reply;
    }
    void exit_now() {
        Cmd c{kExit, 0, 0};
        REQUIRE(write(to, &c, sizeof c) == sizeof c);
        waitpid(pid, nullptr, 0);
        pid = -1;
    }
    RangeSet pages(uint64_t a, uint64_t b) const { return RangeSet{{region + a * P, region + b * P}}; }
    RangeSet whole() const { return pages(0, kRegionPages); }
};

std::unique_ptr<DirtyTracker> start_tracker(Victim& v, Log& log, TrackMethod m) {
    auto sp = SeizedProcess::seize(v.pid, log);
    REQUIRE(sp);
    auto t = DirtyTracker::start(v.pid, **sp, log, m);
    if (!t)
        FAIL(t.error().str());
    REQUIRE((*sp)->resume());
    return std::move(*t);
}

DirtySet collect(DirtyTracker& t) {
    auto d = t.collect();
    if (!d)
        FAIL(d.error().str());
    return std::move(*d);
}

}  // namespace

TEST_CASE("uffd-wp tracker: exactly the written pages, re-armed each round") {
    Log log(0);
    Victim v;
    auto t = start_tracker(v, log, TrackMethod::UffdWp);
    CHECK(t->method() == "uffd-wp");
    // The victim wrote nothing in its region since the baseline.
    CHECK(collect(*t).written.intersect(v.whole()).empty());

    v.run(kWrite, 3, 4);
    v.run(kWrite, 10, 13);
    DirtySet d = collect(*t);
    CHECK(d.written.intersect(v.whole()) == (RangeSet{{v.region + 3 * P, v.region + 4 * P},
                                                      {v.region + 10 * P, v.region + 13 * P}}));
    CHECK(d.zeroed.intersect(v.whole()).empty());
    // Re-armed: nothing new.
    CHECK(collect(*t).written.intersect(v.whole()).empty());
    // Written again after the re-arm: reported again.
    v.run(kWrite, 3, 4);
    CHECK(collect(*t).written.intersect(v.whole()) == v.pages(3, 4));
}

TEST_CASE("uffd-wp tracker: dropped pages are holes, new and moved VMAs are dirty and then tracked") {
    Log log(0);
    Victim v;
    auto t = start_tracker(v, log, TrackMethod::UffdWp);
    collect(*t);

    // Written and then dropped: written, and zero now (pitfall 3).
    v.run(kWriteDontneed, 30, 32);
    DirtySet d = collect(*t);
    CHECK(d.written.intersect(v.whole()) == v.pages(30, 32));
    CHECK(d.zeroed.intersect(v.whole()) == v.pages(30, 32));

    // A new mapping after the baseline: dirty as a whole, tracked from then on.
    uint64_t fresh = v.run(kMmap, 4);
    d = collect(*t);
    CHECK(d.written.intersect(RangeSet{{fresh, fresh + 4 * P}}) == RangeSet{{fresh, fresh + 4 * P}});
    CHECK(collect(*t).written.intersect(RangeSet{{fresh, fresh + 4 * P}}).empty());

    // mremap: the moved VMA lost its registration; dirty as a whole, then tracked again.
    uint64_t moved = v.run(kMremap);
    REQUIRE(moved != v.movable);
    RangeSet mv{{moved, moved + kMovablePages * P}};
    d = collect(*t);
    CHECK(d.written.intersect(mv) == mv);
    CHECK(collect(*t).written.intersect(mv).empty());

    // Pages never written since the baseline stay clean through all of this.
    CHECK(collect(*t).written.intersect(v.pages(40, 64)).empty());
}

TEST_CASE("uffd-wp tracker: a page dropped without being written is reported as written and zero") {
    // The page held data when the baseline was taken and was never written since: only the
    // zap changed it. 6.18 reports it (KERNEL-NOTES section 4), and the dumper relies on it:
    // with an exact plan (page_dumper.h DirtyPlan::exact) a page of anonymous memory that is in
    // the parent and not reported is recorded as in the parent without looking at it.
    Log log(0);
    Victim v;
    auto t = start_tracker(v, log, TrackMethod::UffdWp);
    v.run(kDontneed, 20, 24);
    DirtySet d = collect(*t);
    CHECK(d.written.intersect(v.whole()) == v.pages(20, 24));
    CHECK(d.zeroed.intersect(v.whole()) == v.pages(20, 24));
}

TEST_CASE("uffd-wp tracker: a reclaimed MADV_FREE page and a new guard region are reported as written") {
    // The other ways anonymous memory changes without a write (DirtyPlan::exact relies on
    // them being reported): a lazily freed page that reclaim discarded reads as zero, and a
    // guard region installed over data faults. Both leave no write-protected PTE behind.
    Log log(0);
    Victim v;
    auto t = start_tracker(v, log, TrackMethod::UffdWp);
    collect(*t);
    if (v.run(kFreePageout, 50, 52) == 1) {
        DirtySet d = collect(*t);
        CHECK(d.written.intersect(v.whole()) == v.pages(50, 52));
        // Page 50 was read since (the zero page is mapped there now); 51 has nothing behind it.
        CHECK(d.zeroed.intersect(v.whole()) == v.pages(51, 52));
    } else {
        WARN("MADV_PAGEOUT did not discard the lazily freed pages here: not checked");
        collect(*t);
    }
    uint64_t guard = v.run(kGuard, 56, 58);
    if (guard == EINVAL) {
        WARN("no MADV_GUARD_INSTALL on this kernel: not checked");
        return;
    }
    REQUIRE(guard == 0);
    CHECK(collect(*t).written.intersect(v.whole()) == v.pages(56, 58));
    // And nothing more once re-armed.
    CHECK(collect(*t).written.intersect(v.whole()).empty());
}

TEST_CASE("trackers fail with ESRCH once the process has exited") {
    Log log(0);
    for (TrackMethod m : {TrackMethod::UffdWp, TrackMethod::Hash}) {
        Victim v;
        auto t = start_tracker(v, log, m);
        kill(v.pid, SIGKILL);
        waitpid(v.pid, nullptr, 0);
        v.pid = -1;
        auto d = t->collect();
        REQUIRE_FALSE(d);
        CHECK(d.error().err() == ESRCH);
    }
}

TEST_CASE("hash tracker: written, dropped and new pages") {
    Log log(0);
    Victim v;
    auto t = start_tracker(v, log, TrackMethod::Hash);
    CHECK(t->method() == "hash");
    v.run(kWrite, 5, 7);
    v.run(kDontneed, 50, 52);
    uint64_t fresh = v.run(kMmap, 2);
    DirtySet d = collect(*t);
    CHECK(d.written.intersect(v.whole()) == (RangeSet{{v.region + 5 * P, v.region + 7 * P},
                                                      {v.region + 50 * P, v.region + 52 * P}}));
    CHECK(d.zeroed.intersect(v.whole()) == v.pages(50, 52));
    CHECK(d.written.contains(fresh));
    CHECK(collect(*t).written.intersect(v.whole()).empty());
}

// ---- The tracking agent ----
#include <sys/stat.h>

#include "migrate/track/track_agent.h"

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/criu-agent-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() {
        std::string cmd = "rm -rf " + path;
        (void)!system(cmd.c_str());
    }
};

// Registered VMAs of `pid` (smaps VmFlags "uw").
int uffd_wp_vmas(pid_t pid) {
    auto smaps = read_smaps(pid);
    REQUIRE(smaps);
    int n = 0;
    for (const auto& m : *smaps)
        n += m.has_flag("uw");
    return n;
}

bool wait_until(const std::function<bool()>& cond) {
    for (int i = 0; i < 1500; ++i) {  // 15 s: a loaded machine
        if (cond())
            return true;
        usleep(10000);
    }
    return false;
}

}  // namespace

TEST_CASE("tracking agent: holds the tracking, answers by generation, refuses strangers, stops") {
    Log log(0);
    TempDir dir;
    Victim v;
    AgentConfig cfg;
    cfg.dir = dir.path;
    cfg.log_path = dir.path + "/agent.log";
    AgentState s;
    {
        auto sp = SeizedProcess::seize(v.pid, log);
        REQUIRE(sp);
        auto uffd = UffdWpTracker::steal_userfaultfd(**sp, log);
        REQUIRE(uffd);
        auto t = UffdWpTracker::create(v.pid, std::move(*uffd), log);
        REQUIRE(t);
        uint64_t st = (*t)->start_time();
        auto spawned = spawn_track_agent(std::move(*t), cfg, log);
        if (!spawned)
            FAIL(spawned.error().str());
        s = *spawned;
        CHECK(s.generation == 1);
        CHECK(st == *read_start_time(v.pid));
        REQUIRE((*sp)->resume());
    }
    // This process closed its uffd: the agent's keeps the VMAs registered.
    CHECK(uffd_wp_vmas(v.pid) > 0);
    uint64_t st = *read_start_time(v.pid);

    v.run(kWrite, 7, 9);
    auto c = agent_collect(v.pid, s.session, 1, st, dir.path);
    if (!c)
        FAIL(c.error().str());
    CHECK(c->state.generation == 2);
    CHECK(c->dirty.written.intersect(v.whole()) == v.pages(7, 9));

    // A requester whose dump failed asks again from generation 1: it gets the union.
    v.run(kWrite, 20, 21);
    auto again = agent_collect(v.pid, s.session, 1, st, dir.path);
    REQUIRE(again);
    CHECK(again->state.generation == 3);
    CHECK(again->dirty.written.intersect(v.whole()) ==
          (RangeSet{{v.region + 7 * P, v.region + 9 * P}, {v.region + 20 * P, v.region + 21 * P}}));
    auto from3 = agent_collect(v.pid, s.session, 3, st, dir.path);
    REQUIRE(from3);
    CHECK(from3->dirty.written.intersect(v.whole()).empty());

    auto wrong_session = agent_collect(v.pid, s.session + 1, 4, st, dir.path);
    REQUIRE_FALSE(wrong_session);
    CHECK(wrong_session.error().err() == ESTALE);
    auto future = agent_collect(v.pid, s.session, 99, st, dir.path);
    REQUIRE_FALSE(future);
    CHECK(future.error().err() == ESTALE);
    auto reused = agent_collect(v.pid, s.session, 4, st + 1, dir.path);
    REQUIRE_FALSE(reused);
    CHECK(reused.error().err() == ESRCH);
    auto ping = agent_ping(v.pid, dir.path);
    REQUIRE(ping);
    CHECK(ping->session == s.session);
    CHECK(ping->generation == 4);

    // Stopped: the uffd is closed, the process is left unregistered, the socket is gone, and
    // so is the log of an agent that ended normally.
    struct stat sb {};
    REQUIRE(stat(cfg.log_path.c_str(), &sb) == 0);
    REQUIRE(agent_stop(v.pid, dir.path));
    CHECK(wait_until([&] { return uffd_wp_vmas(v.pid) == 0; }));
    CHECK(wait_until([&] { return stat(agent_socket_path(v.pid, dir.path).c_str(), &sb) != 0; }));
    CHECK(wait_until([&] { return stat(cfg.log_path.c_str(), &sb) != 0; }));
    auto gone = agent_collect(v.pid, s.session, 4, st, dir.path);
    REQUIRE_FALSE(gone);
    CHECK((gone.error().err() == ENOENT || gone.error().err() == ECONNREFUSED));
    CHECK(agent_stop(v.pid, dir.path));  // no agent: nothing to do
    // The victim is still fine and answers.
    CHECK(v.run(kWrite, 1, 2) == 0);
}

TEST_CASE("tracking agent: ends by itself when the process exits or after its idle timeout") {
    Log log(0);
    TempDir dir;
    for (bool exit_first : {true, false}) {
        Victim v;
        AgentConfig cfg;
        cfg.dir = dir.path;
        cfg.idle_timeout_s = exit_first ? 3600 : 1;
        cfg.log_path = fmt::format("{}/{}.log", dir.path, v.pid);
        {
            auto sp = SeizedProcess::seize(v.pid, log);
            REQUIRE(sp);
            auto uffd = UffdWpTracker::steal_userfaultfd(**sp, log);
            REQUIRE(uffd);
            auto t = UffdWpTracker::create(v.pid, std::move(*uffd), log);
            REQUIRE(t);
            REQUIRE(spawn_track_agent(std::move(*t), cfg, log));
            REQUIRE((*sp)->resume());
        }
        std::string sock = agent_socket_path(v.pid, dir.path);
        struct stat sb {};
        REQUIRE(stat(sock.c_str(), &sb) == 0);
        REQUIRE(stat(cfg.log_path.c_str(), &sb) == 0);
        if (exit_first)
            v.exit_now();
        CHECK(wait_until([&] { return stat(sock.c_str(), &sb) != 0; }));
        // A normal end: no log left behind in the agents' directory.
        CHECK(wait_until([&] { return stat(cfg.log_path.c_str(), &sb) != 0; }));
        // The agent removes its socket before it exits; the kernel unregisters the VMAs only when
        // the uffd is released with the agent's last fd, a moment later.
        if (!exit_first)
            CHECK(wait_until([&] { return uffd_wp_vmas(v.pid) == 0; }));
    }
}
