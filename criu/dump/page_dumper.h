// Memory pages of one seized process into pagemap-<pid>.img / pages-<pid>.img.
//
// Pages that exist are found with PAGEMAP_SCAN (raw /proc/PID/pagemap as the fallback), read
// with process_vm_readv, many iovecs per call, into 4 MiB page-aligned buffers (/proc/PID/mem
// for PROT_NONE areas), checked for all-zero content, and handed to a writer thread that feeds
// the PageWriter (compression and disk) while the next buffer is read.
#pragma once

#include <vector>

#include "criu/core/error.h"
#include "criu/core/task.h"
#include "criu/dump/dump_context.h"
#include "criu/dump/vma_list.h"
#include "migrate/track/dirty_set.h"
#include "proto/mm.pb.h"

namespace criu {

class PageHashes;

// An increment driven by exact dirty tracking (criu/dump/incremental.h, migrate/track/).
// A page that holds data now is read again if it is in `dirty` or the parent image set has no
// entry for it, and is recorded as PE_PARENT otherwise. A page that holds no data now is a hole
// whatever the tracker said (so a page dropped without being written, which uffd-wp does not
// report, can never come back from the parent).
struct DirtyPlan {
    RangeSet dirty;
    RangeSet parent_pages;
    // The tracker reports every change of anonymous private memory as a write, drops and
    // guard regions included (uffd-wp: MADV_DONTNEED, MADV_FREE reclaim, MADV_GUARD_INSTALL
    // leave no write-protected PTE behind; verified on 6.18 by unit.track). Then a page of such
    // memory that is in the parent and not dirty is as the parent has it, and only the dirty
    // pages and those the parent lacks are looked at (the final step of a pre-copy dump needs no
    // walk over all memory). Other memory (file, shared) is always looked at in full.
    bool exact = false;
};

// Writes the pages of `vmas` (see PagePolicy) and adds the guard regions found to `mm`.
// With `parent` (page hashes of this process in the previous image set, see page_hashes.h),
// pages whose hash equals the parent's are recorded as PE_PARENT instead of written again.
// With `hashes`, the hash of every page kept is recorded there, for the next increment.
// With `plan`, see DirtyPlan (`parent` still turns re-read pages with an unchanged hash into
// PE_PARENT). Updates ctx.stats (pages scanned/written/skipped, bytes, memdump/memwrite times).
// Swap entries that are uffd-wp markers (KERNEL-NOTES pitfall 2) are never taken for data.
Status dump_pages(DumpContext& ctx, Task& task, const std::vector<DumpVma>& vmas, images::MmInfo& mm,
                  const PageHashes* parent = nullptr, PageHashes* hashes = nullptr, const DirtyPlan* plan = nullptr);
// The same for a process that may be running (pre-dumps and pre-copy rounds copy while it
// runs): memory is read by pid. With `unreadable`, a range that cannot be read any more
// (unmapped meanwhile) is left out of the image and added there instead of failing the dump;
// the next increment reads it if it holds data then (it is not in its parent).
Status dump_pages(DumpContext& ctx, pid_t pid, const std::vector<DumpVma>& vmas, images::MmInfo& mm,
                  const PageHashes* parent, PageHashes* hashes, const DirtyPlan* plan,
                  RangeSet* unreadable = nullptr);

}  // namespace criu
