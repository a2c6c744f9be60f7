#include "criu/dump/pre_copy.h"

#include <fcntl.h>
#include <algorithm>
#include <cstring>
#include <unistd.h>

#include "criu/core/proc_parse.h"
#include "criu/dump/dump.h"
#include "criu/dump/incremental.h"
#include "criu/dump/page_dumper.h"
#include "images/page_reader.h"

namespace criu {

namespace {

std::string round_dir_name(unsigned k) { return fmt::format("pre-copy-{}", k); }

// Removes pre-copy-K directories an earlier run left in `top` (a stale round must never be
// taken for part of this chain).
void remove_stale_rounds(const std::string& top, Log& log) {
    for (unsigned k = 1; k <= kMaxPreCopyRounds + 8; ++k) {
        std::string path = top + "/" + round_dir_name(k);
        auto dir = ImageDir::open(path);
        if (!dir)
            continue;
        if (auto files = dir->list_files()) {
            int dfd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            for (const auto& f : *files)
                unlinkat(dfd, f.c_str(), 0);
            if (dfd >= 0)
                close(dfd);
        }
        if (rmdir(path.c_str()) < 0)
            log.warn("dump", "cannot remove the stale pre-copy round {}: {}", path, std::strerror(errno));
    }
}

template <class Msg>
Status write_image(const ImageDir& dir, ImageType type, int64_t id, const Msg& msg) {
    ImageWriter w = TRY(dir.open_writer(type, id));
    TRY_VOID(w.write(msg));
    return w.close();
}

struct RoundResult {
    images::PreCopyRound stats;
    RangeSet pages;  // the entries the round's pagemap holds: the next round's parent coverage
};

// One memory-only image set of the running process in `dir`.
Expected<RoundResult> copy_round(const Options& opts, Log& log, const kfc::KernelFeatures& kf, pid_t pid,
                                 unsigned k, const std::string& top, DirtyTracker& tracker, LiveTracking& live,
                                 const RangeSet* parent_pages) {
    auto t0 = std::chrono::steady_clock::now();
    RoundResult res;
    res.stats.set_index(k);
    res.stats.set_images_dir(round_dir_name(k));
    std::string path = top + "/" + round_dir_name(k);
    DumpContext ctx(opts, log, TRY(ImageDir::create(path)), kf);
    DirtyPlan plan;
    RangeSet unreadable;
    // The dirty set first, then the memory map: a VMA mapped in between is copied now and
    // reported (as new) by the next collect. The other order would let a VMA mapped between
    // the two be reported now and left out of this copy.
    if (parent_pages) {
        auto tc = std::chrono::steady_clock::now();
        DirtySet d = TRY_CTX(tracker.collect(), "pre-copy round {} of pid {}", k, pid);
        res.stats.set_collect_us(micros_since(tc));
        d.written.add(live.carry);
        res.stats.set_pages_dirty(d.written.pages());
        plan.dirty = std::move(d.written);
        plan.parent_pages = *parent_pages;
        plan.exact = tracker.method() == "uffd-wp";
    }
    live.carry.clear();
    std::vector<DumpVma> vmas = TRY_CTX(collect_vmas(pid), "pre-copy round {} of pid {}", k, pid);
    images::MmInfo mm;
    for (const DumpVma& v : vmas)
        *mm.add_vmas() = v.vma;
    TRY_VOID_CTX(dump_pages(ctx, pid, vmas, mm, nullptr, nullptr, &plan, &unreadable), "pre-copy round {} of pid {}", k, pid);
    live.carry = std::move(unreadable);
    TRY_VOID(write_image(ctx.dir, ImageType::Mm, pid, mm));
    images::PstreeEntry ps;
    ps.set_pid(pid);
    TRY_VOID(write_image(ctx.dir, ImageType::Pstree, -1, ps));
    images::Inventory inv;
    inv.set_root_pid(pid);
    inv.set_tool_version("0.1");
    inv.set_pre_dump(true);
    inv.set_page_size(uint32_t(sysconf(_SC_PAGESIZE)));
    if (k > 1)
        inv.set_parent_dir("../" + round_dir_name(k - 1));
    inv.set_dirty_tracking(k > 1 ? std::string(tracker.method()) : std::string());
    TRY_VOID(ctx.dir.write_inventory(inv));
    PageReader pr = TRY_CTX(PageReader::open(ctx.dir, pid, false), "pre-copy round {}", k);
    for (const PageEntry& e : pr.entries())
        res.pages.add(e.vaddr, e.end());
    res.stats.set_pages_written(ctx.stats.pages_written());
    res.stats.set_bytes_written(ctx.stats.bytes_written());
    res.stats.set_duration_us(micros_since(t0));
    return res;
}

}  // namespace

bool pre_copy_should_stop(unsigned round, uint64_t estimate, uint64_t prev_estimate, double pages_per_s,
                          unsigned max_downtime_ms) {
    if (round >= kMaxPreCopyRounds)
        return true;
    if (round < 2)
        return false;  // round 1 copies everything: its length says nothing about the rate yet
    // What the final, frozen step would have to copy is about what a round of this length
    // dirties; copying it takes dirty / speed.
    double copy_ms = estimate == 0       ? 0
                     : pages_per_s > 0 ? double(estimate) * 1000.0 / pages_per_s
                                       : 1e18;
    if (copy_ms <= double(max_downtime_ms))
        return true;
    // Not shrinking any more: further rounds only burn bandwidth.
    return prev_estimate && estimate * 4 > prev_estimate * 3;
}

Status run_pre_copy_dump(const Options& opts, Log& log) {
    InterruptGuard interrupt_guard;
    auto started = std::chrono::steady_clock::now();
    pid_t pid = opts.pid;
    if (pid <= 0)
        return failf(EINVAL, "no process to dump (pid {})", pid);
    TRY_VOID(preflight(pid, opts, log));
    if (opts.dry_run)
        return {};
    ImageDir top = TRY(ImageDir::create(opts.images_dir));
    remove_stale_rounds(top.path(), log);
    kfc::KernelFeatures kf = kfc::KernelFeatures::detect();

    LiveTracking live;
    std::unique_ptr<DirtyTracker> tracker;
    uint64_t arm_us = 0, stopped_us = 0;
    {
        // Stopped only while the tracking is prepared (uffd-wp: one userfaultfd() call in the
        // process); the write-protection of its memory is armed once it runs again.
        auto t0 = std::chrono::steady_clock::now();
        std::unique_ptr<SeizedProcess> sp = TRY_CTX(SeizedProcess::seize(pid, log), "pre-copy of pid {}", pid);
        auto pending =
            TRY_CTX(DirtyTracker::prepare(pid, *sp, log), "pre-copy of pid {}: starting dirty tracking", pid);
        TRY_VOID_CTX(sp->resume(), "resuming pid {} after starting dirty tracking", pid);
        stopped_us = micros_since(t0);
        tracker = TRY_CTX(pending.arm(), "pre-copy of pid {}: arming dirty tracking", pid);
        arm_us = micros_since(t0);
    }
    live.tracker = tracker.get();
    log.info("dump", "pid {}: pre-copy with {} tracking (armed in {} us, the process stopped for {} us of them)", pid,
             tracker->method(), arm_us, stopped_us);

    RangeSet parent_pages;
    uint64_t prev_estimate = 0;
    double best_speed = 0;       // pages per second: the fastest round tells the copy speed
    uint64_t prev_duration = 0;  // of the round before, in us
    unsigned k = 1;
    for (;; ++k) {
        if (int sig = InterruptGuard::pending())
            return failf(EINTR, "pre-copy interrupted by signal {}", sig);
        RoundResult r = TRY(copy_round(opts, log, kf, pid, k, top.path(), *tracker, live,
                                       k == 1 ? nullptr : &parent_pages));
        if (k == 1)
            r.stats.set_collect_us(arm_us);
        double secs = double(r.stats.duration_us()) / 1e6;
        if (secs > 0)
            best_speed = std::max(best_speed, double(r.stats.pages_written()) / secs);
        uint64_t dirty = r.stats.pages_dirty();
        uint64_t duration = r.stats.duration_us();
        if (k == 1)
            prev_duration = duration;
        log.info("dump", "pid {}: pre-copy round {}: {} pages dirty, {} written, {} bytes, {:.1f} ms", pid, k, dirty,
                 r.stats.pages_written(), r.stats.bytes_written(), r.stats.duration_us() / 1000.0);
        if (opts.progress)
            fmt::print(stderr, "\rpre-copy round {}: {} pages dirty, {} written in {:.0f} ms   ", k, dirty,
                       r.stats.pages_written(), r.stats.duration_us() / 1000.0);
        parent_pages = std::move(r.pages);
        live.rounds.push_back(std::move(r.stats));
        // The round's dirty count is what accumulated during the previous round; what the final
        // step faces is what accumulates during this one, estimated at the same rate.
        uint64_t estimate =
            prev_duration ? uint64_t(double(dirty) * double(duration) / double(prev_duration)) : dirty;
        if (pre_copy_should_stop(k, estimate, prev_estimate, best_speed, opts.max_downtime_ms))
            break;
        prev_estimate = estimate;
        prev_duration = duration;
    }
    if (opts.progress)
        fmt::print(stderr, "\n");
    live.pre_copy_time_us = micros_since(started);

    Options final_opts = opts;
    final_opts.prev_images_dir = round_dir_name(k);
    return run_dump(final_opts, log, &live);
}

}  // namespace criu
