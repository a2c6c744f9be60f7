// The objects behind file-backed and shared VMAs, opened by criu before the restored process
// exists (the blob cannot open anything: by the time it maps, the restorer's view of the
// filesystem may be gone): mapped files (checked against the dumped inode), one shmem object
// per shared anonymous region (the same object for every VMA of one shmid), memfds, and the
// executable for PR_SET_MM_MAP's exe_fd.
#pragma once

#include <sys/types.h>

#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "proto/mm.pb.h"

namespace criu {

struct VmaFiles {
    std::vector<UniqueFd> fds;
    std::vector<int> vma_fd;  // per MmInfo.vmas index: index into fds, -1 for anonymous memory
    int exe = -1;             // index into fds
};

// `dump_time_ns` (Inventory.dump_time_unix_ns, 0 if unknown): a mapped file modified after it
// is refused even with the same inode. The process's unwritten pages come from the file, and
// code rewritten in place under a running copy of the old data ends in SIGSEGV.
Expected<VmaFiles> open_vma_files(const images::MmInfo& mm, pid_t pid, uint64_t dump_time_ns, Log& log);

}  // namespace criu
