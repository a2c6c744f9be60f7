// Dirty tracking with soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): "4" written to
// /proc/PID/clear_refs clears them, /proc/PID/pagemap bit 55 says a page was written since
// (Documentation/admin-guide/mm/soft-dirty.rst). This kernel has no soft-dirty, so only the
// parsing and decision logic (classify_pagemap_words) is tested here, on synthetic words.
#pragma once

#include <span>
#include <vector>

#include "criu/core/proc_parse.h"
#include "migrate/track/dirty_tracker.h"

namespace criu {

inline constexpr uint64_t kPmSoftDirty = 1ull << 55;

// Adds to `out` what the pagemap words of the pages from `base` on say. A page is unchanged only
// if it holds data (present, or a real swap entry) whose soft-dirty bit is clear. Anything else
// is written: soft-dirty pages, and pages with no data behind them, which are also zeroed (a
// zapped PTE carries no soft-dirty bit, so "not written" cannot be told from "dropped" and the
// page must be recorded as a hole).
void classify_pagemap_words(uint64_t base, std::span<const uint64_t> words, DirtySet& out);

class SoftDirtyTracker final : public DirtyTracker {
public:
    // Clears the soft-dirty bits of `pid` (the baseline).
    static Expected<std::unique_ptr<SoftDirtyTracker>> create(pid_t pid, Log& log);
    // Continues the tracking a create() in an earlier criu run started: the bits are in the
    // kernel. `start_time` is the process identity recorded then.
    static Expected<std::unique_ptr<SoftDirtyTracker>> resume(pid_t pid, uint64_t start_time, Log& log);

    Expected<DirtySet> collect() override;
    std::string_view method() const override { return "soft-dirty"; }

private:
    SoftDirtyTracker(pid_t pid, uint64_t st, Log& log) : DirtyTracker(pid, st, log) {}
    Status clear_refs();
    std::vector<MapsEntry> prev_maps_;
};

}  // namespace criu
