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
#include "proto/mm.pb.h"

namespace criu {

class PageHashes;

// Writes the pages of `vmas` (see PagePolicy) and adds the guard regions found to `mm`.
// With `parent` (page hashes of this process in the previous image set, see page_hashes.h),
// pages whose hash equals the parent's are recorded as PE_PARENT instead of written again.
// With `hashes`, the hash of every page kept is recorded there, for the next increment.
// Updates ctx.stats (pages scanned/written/skipped, bytes, memdump/memwrite times).
Status dump_pages(DumpContext& ctx, Task& task, const std::vector<DumpVma>& vmas, images::MmInfo& mm,
                  const PageHashes* parent = nullptr, PageHashes* hashes = nullptr);

}  // namespace criu
