// How a process's memory map changed between two tracking rounds (/proc/PID/maps).
//
// The uffd-wp tracker takes the kernel's word for which VMAs are registered (PAGE_IS_WPALLOWED,
// see uffd_tracker.h); this diff is the independent second opinion: a page whose mapping is new
// or different (other file, other offset, moved by mremap onto an address that had anonymous
// memory before, ...) is reported dirty even if the kernel would call it tracked.
#pragma once

#include <vector>

#include "criu/core/proc_parse.h"
#include "migrate/track/dirty_set.h"

namespace criu {

// Kernel-provided mappings whose content is not the process's data: never tracked, never
// dumped ([vsyscall], [vvar], [vvar_vclock], [vdso], [uprobes]).
bool vma_is_special(const MapsEntry& m);

// Memory whose content can change without a write through this process's page tables, which
// is all a tracker sees: MAP_SHARED anonymous memory, memfd and SysV shm (another process, or
// write(2) on the memfd), and private mappings of a deleted file or memfd, whose page-cache
// pages the dumper copies (vma_list.h PagePolicy::AllPrivate) and a write(2) changes. Trackers
// report such VMAs dirty as a whole every round. Shared mappings of files on disk are not
// copied (the file holds their content), private file pages only once COWed (then anonymous):
// neither counts.
bool vma_content_untrackable(const MapsEntry& m);

struct MapsDiff {
    RangeSet added;    // pages of `cur` not backed the same way in `prev`
    RangeSet removed;  // pages of `prev` no longer mapped in `cur`
    size_t vmas_added = 0;  // VMAs of `cur` with at least one added page
};

// Both lists sorted by address (as /proc/PID/maps is). A page is "the same" when `prev` mapped
// it from the same object (anonymous private, or the same dev:ino with the same shared flag) at
// the same file offset. Protection changes, splits and merges are not changes.
MapsDiff diff_maps(const std::vector<MapsEntry>& prev, const std::vector<MapsEntry>& cur);

}  // namespace criu
