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
#include "restore/fd_table_share.h"
#include "restore/process_images.h"
#include "restore/tree_plan.h"

namespace criu {

struct ChildPlan;

// What the processes of a dumped tree need to fork each other (restore/tree_fork.cc): the fork
// plan and, by pstree index, the plan of every live process (null for zombies).
struct RestoreTree {
    const TreePlan* plan = nullptr;
    const std::vector<images::PstreeEntry>* pstree = nullptr;
    std::vector<const ChildPlan*> children;
    pid_t root_pid = 0;
    // The handshake of processes that share an fd table (null when none do).
    const SharedFdTables* fd_tables = nullptr;
};

struct ChildPlan {
    const Options* opts = nullptr;
    const RestoredProcessImages* p = nullptr;
    BlobArgs* args = nullptr;               // placed: layout().base is final
    std::span<const uint8_t> code;          // the blob binary
    std::vector<int> slot_fds;              // criu's fd per blob fd slot (BlobFdSlots::all())
    FilesRestorer* files = nullptr;         // null: keep fds 0-2 as they are
    pid_t criu_pid = 0;                     // the parent (criu for the root, else the dumped parent);
                                            // the child dies with it until the end
    const RestoreTree* tree = nullptr;      // null: a single process, nothing to fork
    size_t tree_index = 0;                  // this process in tree->pstree
    // The dump's own IPC namespace (null: the process stays in criu's), recreated first thing;
    // sysv_attached: the segments its VMAs attach (the others removed before the dump go now).
    SysvIpcRestorer* ipc = nullptr;
    const std::set<int>* sysv_attached = nullptr;
};

[[noreturn]] void run_restored_child(const ChildPlan& plan, Log& log);

// Ends a restoring process (or a stand-in, or a zombie being made) after writing `e` as a
// failure report on `report_fd`, which criu reads.
[[noreturn]] void report_child_failure(int report_fd, const Error& e);

// Tree part of a restored process, before its own fds and blob: its session and group, its
// children (each of which runs run_restored_child in turn), the stand-ins for dead leaders and
// its zombies, as plan_tree() says; waits until its zombies have exited and reaps the
// stand-ins. `report_fd` is where forked zombies and stand-ins report a failure.
Status fork_tree_part(const RestoreTree& tree, size_t index, int report_fd, Log& log);

}  // namespace criu
