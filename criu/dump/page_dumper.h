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

// Writes the pages of `vmas` (see PagePolicy) and adds the guard regions found to `mm`.
// Updates ctx.stats (pages scanned/written/skipped, bytes, memdump/memwrite times).
Status dump_pages(DumpContext& ctx, Task& task, const std::vector<DumpVma>& vmas, images::MmInfo& mm);

}  // namespace criu
