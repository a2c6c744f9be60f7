// The restored process before the blob: a forked copy of criu (libc still usable) that already
// has the dumped PID. It takes the dumped session and group, moves criu's service fds up out
// of the way, installs the dumped fds (criu/files), sets cwd/root, umask, rlimits and
// personality, maps the blob area at the chosen hole, copies code and args there and jumps.
// It never returns: a failure is reported on the report pipe and ends the process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/files/fd_kinds.h"
#include "criu/ipc/sysv_ipc.h"
#include "restore/blob_args.h"
#include "restore/process_images.h"

namespace criu {

struct ChildPlan {
    const Options* opts = nullptr;
    const RestoredProcessImages* p = nullptr;
    BlobArgs* args = nullptr;               // placed: layout().base is final
    std::span<const uint8_t> code;          // the blob binary
    std::vector<int> slot_fds;              // criu's fd per blob fd slot (BlobFdSlots::all())
    FilesRestorer* files = nullptr;         // null: keep fds 0-2 as they are
    pid_t criu_pid = 0;                     // the parent; the child dies with it until the end
    // The dump's own IPC namespace (null: the process stays in criu's), recreated first thing;
    // sysv_attached: the segments its VMAs attach (the others removed before the dump go now).
    SysvIpcRestorer* ipc = nullptr;
    const std::set<int>* sysv_attached = nullptr;
};

[[noreturn]] void run_restored_child(const ChildPlan& plan, Log& log);

}  // namespace criu
