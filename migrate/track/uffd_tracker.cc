#include "migrate/track/uffd_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "criu/core/pagemap_scan.h"
#include "criu/core/remote_syscalls.h"
#include "migrate/track/maps_diff.h"

namespace criu {

namespace {

// Not in the 6.1 system headers (include/uapi/linux/userfaultfd.h, 6.4 and 6.7).
constexpr uint64_t kUffdFeatureWpUnpopulated = 1u << 13;
constexpr uint64_t kUffdFeatureWpAsync = 1u << 15;
constexpr int kUffdUserModeOnly = 1;

uint64_t micros(std::chrono::steady_clock::time_point t0) {
    return uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

Expected<UniqueFd> UffdWpTracker::steal_userfaultfd(SeizedProcess& sp, Log& log) {
    pid_t pid = sp.pid();
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd)
        return fail_errno("pid {}: pidfd_open", pid);
    RemoteSyscalls rs = TRY(RemoteSyscalls::open(sp.main_thread(), log));
    long rfd = TRY_CTX(rs.syscall_checked("userfaultfd", SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUffdUserModeOnly),
                       "pid {}: creating the userfaultfd for dirty tracking", pid);
    UniqueFd local(int(syscall(SYS_pidfd_getfd, pidfd.get(), int(rfd), 0)));
    int getfd_errno = errno;
    // The target keeps no fd of its own: only ours holds the uffd context.
    auto closed = rs.syscall(SYS_close, uint64_t(rfd));
    TRY_VOID(rs.close());
    if (!local) {
        errno = getfd_errno;
        return fail_errno("pid {}: pidfd_getfd of its userfaultfd {}", pid, rfd);
    }
    if (!closed || *closed < 0)
        log.warn("track", "pid {}: closing its copy of the userfaultfd ({}) failed", pid, rfd);
    return local;
}

Status UffdWpTracker::open_views() {
    pidfd_.reset(int(syscall(SYS_pidfd_open, pid_, 0)));
    if (!pidfd_)
        return fail_errno("pid {}: pidfd_open", pid_);
    uint64_t st = TRY(read_start_time(pid_));
    if (st != start_time_)
        return failf(ESRCH, "pid {} is another process now (start time {} instead of {})", pid_, st, start_time_);
    std::string path = fmt::format("/proc/{}/pagemap", pid_);
    pagemap_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!pagemap_)
        return fail_errno("pid {}: cannot open {}", pid_, path);
    return {};
}

Expected<std::unique_ptr<UffdWpTracker>> UffdWpTracker::create(pid_t pid, UniqueFd uffd, Log& log) {
    uint64_t st = TRY(read_start_time(pid));
    std::unique_ptr<UffdWpTracker> t(new UffdWpTracker(pid, st, log));
    t->uffd_ = std::move(uffd);
    TRY_VOID(t->open_views());
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = kUffdFeatureWpAsync | kUffdFeatureWpUnpopulated;
    if (ioctl(t->uffd_.get(), UFFDIO_API, &api) < 0)
        return fail_errno("pid {}: UFFDIO_API with WP_ASYNC | WP_UNPOPULATED", pid);
    auto t0 = std::chrono::steady_clock::now();
    TRY_CTX(t->round(true), "pid {}: arming dirty tracking", pid);
    log.info("track", "pid {}: uffd-wp tracking armed over {} VMAs in {} us", pid, t->prev_maps_.size(), micros(t0));
    return t;
}

bool UffdWpTracker::process_exited() const {
    pollfd p{pidfd_.get(), POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

Expected<DirtySet> UffdWpTracker::collect() {
    if (process_exited())
        return failf(ESRCH, "pid {} has exited: dirty tracking ended", pid_);
    auto t0 = std::chrono::steady_clock::now();
    DirtySet d = TRY_CTX(round(false), "pid {}: collecting dirty pages", pid_);
    // The maps read above could have been another process's if the pid was reused meanwhile.
    if (process_exited())
        return failf(ESRCH, "pid {} exited while its dirty pages were collected", pid_);
    last_.collect_us = micros(t0);
    last_.written_pages = d.written.pages();
    last_.zeroed_pages = d.zeroed.pages();
    return d;
}

void UffdWpTracker::register_vmas(const std::vector<MapsEntry>& maps, const RangeSet& unregistered,
                                  RangeSet& registered_now, RangeSet& failed) {
    for (const MapsEntry& m : maps) {
        if (vma_is_special(m) || !unregistered.overlaps(m.start, m.end))
            continue;
        uffdio_register reg{};
        reg.range.start = m.start;
        reg.range.len = m.size();
        reg.mode = UFFDIO_REGISTER_MODE_WP;
        if (ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) == 0) {
            registered_now.add(m.start, m.end);
            continue;
        }
        // Not every mapping can be write-protected (VM_IO, VM_PFNMAP, some drivers' memory);
        // those are dirty every round.
        failed.add(m.start, m.end);
        if (!logged_failures_.overlaps(m.start, m.end)) {
            log_->info("track", "pid {}: VMA {:#x}-{:#x} {} cannot be write-protected ({}): copied every round", pid_,
                      m.start, m.end, m.path, std::strerror(errno));
            logged_failures_.add(m.start, m.end);
        }
    }
}

Expected<DirtySet> UffdWpTracker::round(bool baseline) {
    std::vector<MapsEntry> maps = TRY(read_maps(pid_));
    DirtySet d;
    RangeSet special;
    uint64_t top = 0;
    for (const MapsEntry& m : maps) {
        if (vma_is_special(m))
            special.add(m.start, m.end);
        else
            top = std::max(top, m.end);
    }
    // 1. Pages in VMAs the kernel does not track for us, and pages the maps diff calls new.
    RangeSet unregistered;
    if (top)
        TRY_VOID(pagemap_scan_walk(pagemap_.get(), 0, top, 0, kPageIsWpAllowed, kPageIsWpAllowed, 0,
                                   kPageIsWpAllowed,
                                   [&](uint64_t s, uint64_t e, uint64_t) { unregistered.add(s, e); }));
    unregistered = unregistered.subtract(special);
    MapsDiff diff = diff_maps(prev_maps_, maps);
    RangeSet registered_now, failed;
    register_vmas(maps, unregistered, registered_now, failed);
    d.written.add(unregistered);
    d.written.add(diff.added.subtract(special));
    for (const MapsEntry& m : maps)
        if (vma_content_untrackable(m))
            d.written.add(m.start, m.end);
    last_.new_vma_pages = d.written.pages();

    // 2. Written pages of the registered VMAs, re-protected in the same call. Consecutive VMAs
    // go in one walk; special and unregistrable ones split the walks (CHECK_WPASYNC refuses them).
    std::vector<std::pair<uint64_t, uint64_t>> walks;
    for (const MapsEntry& m : maps) {
        bool ok = !special.overlaps(m.start, m.end) && !failed.overlaps(m.start, m.end) &&
                  (registered_now.overlaps(m.start, m.end) || !unregistered.overlaps(m.start, m.end));
        if (!ok) {
            walks.push_back({0, 0});  // a break
            continue;
        }
        if (!walks.empty() && walks.back().second != 0)
            walks.back().second = m.end;
        else
            walks.push_back({m.start, m.end});
    }
    auto take = [&](uint64_t s, uint64_t e, uint64_t cats) {
        d.written.add(s, e);
        if (!(cats & (kPageIsPresent | kPageIsSwapped)))
            d.zeroed.add(s, e);
    };
    const uint64_t flags = kPmScanWpMatching | kPmScanCheckWpAsync;
    const uint64_t ret = kPageIsWritten | kPageIsPresent | kPageIsSwapped;
    for (auto [s, e] : walks) {
        if (s == e)
            continue;
        auto r = pagemap_scan_walk(pagemap_.get(), s, e, flags, 0, kPageIsWritten, 0, ret, take);
        if (r)
            continue;
        if (r.error().err() != EPERM)
            return std::unexpected(std::move(r.error()));
        // A VMA changed under us: walk VMA by VMA; one that still refuses is dirty as a whole
        // and gets registered next round. What the failed walk already reported stays in `d`.
        for (const MapsEntry& m : maps) {
            if (m.end <= s || m.start >= e)
                continue;
            auto one = pagemap_scan_walk(pagemap_.get(), m.start, m.end, flags, 0, kPageIsWritten, 0, ret, take);
            if (!one) {
                if (one.error().err() != EPERM)
                    return std::unexpected(std::move(one.error()));
                d.written.add(m.start, m.end);
            }
        }
    }
    // Zeroed pages are holes only if nothing wrote them again; whole-VMA dirt is not "zero".
    d.zeroed = d.zeroed.intersect(d.written);
    prev_maps_ = std::move(maps);
    if (baseline)
        return DirtySet{};
    return d;
}

}  // namespace criu
