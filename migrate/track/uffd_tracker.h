// Dirty tracking with userfaultfd write-protect in async mode, read and re-armed with the
// PAGEMAP_SCAN ioctl (KERNEL-NOTES section 4, verified on 6.18).
//
// Only the userfaultfd() call runs in the target; the uffd ioctls act on the mm the uffd was
// created for, so the tracker (or the tracking agent it is handed to) does everything else from
// outside while the process runs. Each collect():
//   1. asks the kernel which pages lie in VMAs that are not registered (no PAGE_IS_WPALLOWED):
//      new mmaps, VMAs moved by mremap, VMAs mapped over registered ones; cross-checked with a
//      diff of /proc/PID/maps (maps_diff.h). Those are dirty as a whole and get registered (what
//      cannot be registered stays dirty every round);
//   2. runs PAGEMAP_SCAN(PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC) over the registered VMAs:
//      the kernel returns the WRITTEN pages and write-protects them again atomically. Written
//      pages that are not present (MADV_DONTNEED) are reported as zeroed (pitfall 3); the
//      markers that WP_UNPOPULATED puts on never-populated PTEs are not written (pitfall 2) and
//      never show up here.
// A VMA that changes between steps 1 and 2 makes the scan fail with EPERM: that VMA is dirty as
// a whole and is registered next round.
#pragma once

#include <functional>
#include <vector>

#include "criu/core/proc_parse.h"
#include "criu/core/unique_fd.h"
#include "migrate/track/dirty_tracker.h"

namespace criu {

class UffdWpTracker final : public DirtyTracker {
public:
    // Runs userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY) in the stopped process and
    // takes the result with pidfd_getfd; the target's own fd is closed again, so the process is
    // left with nothing but the (still unregistered) uffd context.
    static Expected<UniqueFd> steal_userfaultfd(SeizedProcess& sp, Log& log);

    // UFFDIO_API (WP_ASYNC | WP_UNPOPULATED) on a fresh uffd of `pid`, registers every VMA and
    // write-protects every page: the baseline.
    static Expected<std::unique_ptr<UffdWpTracker>> create(pid_t pid, UniqueFd uffd, Log& log);


    Expected<DirtySet> collect() override;
    std::string_view method() const override { return "uffd-wp"; }

    int uffd() const { return uffd_.get(); }
    // Readable (POLLIN) once the process has exited.
    int pidfd() const { return pidfd_.get(); }
    bool process_exited() const;
    // Every fd the tracker holds (the agent keeps these and closes everything else).
    std::vector<int> fds() const { return {uffd_.get(), pagemap_.get(), pidfd_.get()}; }

private:
    UffdWpTracker(pid_t pid, uint64_t start_time, Log& log) : DirtyTracker(pid, start_time, log) {}
    Status open_views();
    Expected<DirtySet> round(bool baseline);
    // Registers the not-yet-registered VMAs of `maps` that overlap `unregistered`; adds to
    // `dirty` everything that stays unregistered.
    void register_vmas(const std::vector<MapsEntry>& maps, const RangeSet& unregistered, RangeSet& registered_now,
                       RangeSet& failed);

    UniqueFd uffd_;
    UniqueFd pagemap_;
    UniqueFd pidfd_;
    std::vector<MapsEntry> prev_maps_;
    RangeSet logged_failures_;  // VMAs whose registration failure was already logged
};

}  // namespace criu
