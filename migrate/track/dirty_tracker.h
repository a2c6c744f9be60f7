// DirtyTracker: which pages of a running process were written since the last look. Used by
// pre-dump / dump --track-mem (criu/dump/incremental.h), dump --pre-copy and the pre-copy
// rounds of criu migrate.
//
//   SeizedProcess& sp = ...;                          // stopped: the baseline is taken now
//   auto t = TRY(DirtyTracker::start(pid, sp, log));  // method chosen from the kernel probes
//   copy everything (may run after sp is resumed: whatever is written meanwhile shows up next)
//   sp.resume() ... the process runs ...
//   DirtySet d = TRY(t->collect());                   // written since start(), re-armed
//   copy d.written again (d.zeroed are holes now) ... repeat ...
//
// collect() can be called while the process runs: the written pages are reported and
// write-protected again in one atomic step, so a write racing with the copy that follows is
// simply reported by the next collect(). Every method is exact in the direction that matters:
// a written page is never missing from the set; the set may hold pages that were not written
// (whole new VMAs, huge pages, VMAs that cannot be tracked, and memory that can change without a
// write through the process's page tables: shared memory, memfd and deleted-file mappings,
// maps_diff.h vma_content_untrackable, reported as a whole every round).
//
// Methods (KERNEL-NOTES sections 3 and 4):
//   "uffd-wp"    userfaultfd write-protect in async mode, read and re-armed with PAGEMAP_SCAN
//                (6.7+; this kernel). The userfaultfd is the tracking: when its last fd closes,
//                the kernel unregisters every VMA and every page reads as written again.
//   "soft-dirty" clear_refs 4 + pagemap bit 55 (kernels with CONFIG_MEM_SOFT_DIRTY).
//   "hash"       a 64-bit hash of every page, compared each round: exact, but reads all memory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string_view>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/seized_process.h"
#include "criu/core/unique_fd.h"
#include "migrate/track/dirty_set.h"

namespace criu {

enum class TrackMethod { Auto, UffdWp, SoftDirty, Hash };
std::string_view track_method_name(TrackMethod m);

class DirtyTracker {
public:
    // Starts tracking `pid`, whose threads `sp` holds stopped (the uffd-wp method injects one
    // userfaultfd() call through RemoteSyscalls; the others only need the pid). Auto picks the
    // best method the kernel probes (kernel-feature-check mem_dirty_track) report. On error
    // nothing is left in the process.
    static Expected<std::unique_ptr<DirtyTracker>> start(pid_t pid, SeizedProcess& sp, Log& log,
                                                         TrackMethod method = TrackMethod::Auto);

    // start() in two steps, so that the process is stopped only for the first: prepare() while
    // `sp` holds it stopped (uffd-wp: the userfaultfd() call runs in it; nothing for the other
    // methods), then Pending::arm() once it runs again (the registration and write-protection
    // of every page: ~13 ms per GiB, no stopped process needed). The baseline is taken page by
    // page during arm(): copy only after it returns, and a page written meanwhile is simply
    // copied as it is then.
    class Pending {
    public:
        Expected<std::unique_ptr<DirtyTracker>> arm();
        TrackMethod method() const { return method_; }

    private:
        friend class DirtyTracker;
        Pending(pid_t pid, TrackMethod m, Log& log) : pid_(pid), method_(m), log_(&log) {}
        pid_t pid_;
        TrackMethod method_;
        Log* log_;
        UniqueFd uffd_;
    };
    static Expected<Pending> prepare(pid_t pid, SeizedProcess& sp, Log& log, TrackMethod method = TrackMethod::Auto);

    virtual ~DirtyTracker() = default;

    // Pages written since the previous collect() (or start()), sorted and disjoint, and the
    // tracking re-armed. Fails with ESRCH when the process is gone or was replaced (exec, pid
    // reuse): a tracker that failed must not be trusted again.
    virtual Expected<DirtySet> collect() = 0;

    // "uffd-wp", "soft-dirty" or "hash" (what inventory.dirty_tracking records).
    virtual std::string_view method() const = 0;

    pid_t pid() const { return pid_; }
    // /proc/PID/stat field 22 when tracking started: with the pid, the process's identity.
    uint64_t start_time() const { return start_time_; }

    // What the last collect() cost and found (for logs and --stats-json).
    struct RoundStats {
        uint64_t collect_us = 0;
        uint64_t written_pages = 0;
        uint64_t zeroed_pages = 0;
        uint64_t new_vma_pages = 0;   // pages dirty because their VMA is new, moved or untrackable
    };
    const RoundStats& last_round() const { return last_; }

    // Where the tracker logs from now on (the tracking agent has a log of its own).
    void set_log(Log& log) { log_ = &log; }

protected:
    DirtyTracker(pid_t pid, uint64_t start_time, Log& log) : pid_(pid), start_time_(start_time), log_(&log) {}

    pid_t pid_;
    uint64_t start_time_;
    Log* log_;
    RoundStats last_;
};

// /proc/PID/stat field 22 (start time in clock ticks since boot).
Expected<uint64_t> read_start_time(pid_t pid);
uint64_t parse_start_time(std::string_view stat_line);  // 0 when malformed

}  // namespace criu
