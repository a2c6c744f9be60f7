// The objects behind file-backed and shared VMAs, opened by criu before the restored process
// exists (the blob cannot open anything: by the time it maps, the restorer's view of the
// filesystem may be gone): mapped files (checked against the dumped inode), one shmem object
// per shared anonymous region (the same object for every VMA of one shmid), memfds, and the
// executable for PR_SET_MM_MAP's exe_fd.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <set>
#include <utility>
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

// Shared memory of a process tree: one object per (dev, shmid) for every process that maps it
// (MAP_SHARED anonymous memory inherited across fork, memfds), so that a write in one process
// is seen by the others. Its pages are in the images of the first process that maps it.
struct SharedMemObjects {
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> size;  // the largest extent any process maps
    std::map<std::pair<uint64_t, uint64_t>, UniqueFd> fds;   // created by the first open_vma_files
    // Memfds the dump also has open as fds: the object the fds get (FilesRestorer::memfd_for),
    // already holding the content, so that mapping and fds are one memfd again. An empty
    // UniqueFd: no fd refers to it.
    std::function<Expected<UniqueFd>(uint64_t dev, uint64_t ino)> memfd_object;
    std::set<std::pair<uint64_t, uint64_t>> filled;  // objects from memfd_object: no page filling
    // Adds the extents `mm` maps to `size`.
    void note(const images::MmInfo& mm);
};

// `dump_time_ns` (Inventory.dump_time_unix_ns, 0 if unknown): a mapped file modified after it
// is refused even with the same inode. The process's unwritten pages come from the file, and
// code rewritten in place under a running copy of the old data ends in SIGSEGV.
// `shared`: the tree's shared memory objects (null: this process's own).
Expected<VmaFiles> open_vma_files(const images::MmInfo& mm, pid_t pid, uint64_t dump_time_ns, Log& log,
                                  SharedMemObjects* shared = nullptr);

}  // namespace criu
