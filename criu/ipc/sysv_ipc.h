// System V IPC (shared memory segments, message queues with their messages, semaphore sets)
// of a process that has its own IPC namespace (KERNEL-NOTES section 7): dumped from inside
// that namespace and recreated, with the same ids, keys, modes, owners and contents, in a new
// IPC namespace of the restored process before it maps anything.
//
// A process sharing criu's IPC namespace (the host's, usually) is not dumped this way: the
// objects are not its own and a restore cannot give them ids it does not control. If it has
// System V shared memory attached, preflight refuses it by name. Message queues and semaphore
// sets of the host namespace leave no trace in the process and are not looked at.
//
// Images: ipc-ns.img (one IpcNamespace) and one raw sparse file per segment with its bytes
// (SysvShm.content_file). Mappings of segments are VMA_SYSV_SHM VMAs in mm.img whose shmid is
// the segment id; the restorer blob attaches them with shmat() at their address.
// The processes' semaphore undo adjustments (semadj): sysv_semadj.h. Not restored: the SHM_HUGETLB flag.
#pragma once

#include <sys/types.h>

#include <optional>
#include <set>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "proto/ipc.pb.h"

namespace criu {

// Whether `pid` lives in an IPC namespace other than criu's own.
Expected<bool> has_own_ipc_ns(pid_t pid);

// Nothing stopped: refuses a process in criu's IPC namespace that has System V shared memory
// attached, naming the mapping.
Status preflight_sysv_ipc(pid_t pid);

// Writes ipc-ns.img and the segment contents into `images_dirfd` when `pid` has its own IPC
// namespace (returns false and writes nothing otherwise). The namespace is entered from a
// short-lived thread of criu (setns affects only the calling thread); the objects are only
// read: segments attached read-only and detached, messages read with MSG_COPY.
Expected<bool> dump_sysv_ipc(pid_t pid, int images_dirfd, Log& log);

// Restore half. load() reads and validates ipc-ns.img (an empty optional if the dump has none)
// and opens every content file; restore_in_child() runs in the restored process before it maps
// anything or installs fds: unshare(CLONE_NEWIPC), the namespace's limits, then every object
// with its id, owner, mode and content. It closes the content files.
class SysvIpcRestorer {
public:
    static Expected<std::optional<SysvIpcRestorer>> load(int images_dirfd, Log& log);
    // `attached`: segments the process's VMAs attach (the blob removes those that were removed
    // before the dump once it has attached them; the others are removed here).
    Status restore_in_child(const std::set<int>& attached);
    const images::IpcNamespace& image() const { return ns_; }
    // Whether segment `shmid` exists in the image (a VMA_SYSV_SHM VMA must name one).
    bool has_segment(int shmid) const;

private:
    images::IpcNamespace ns_;
    std::vector<UniqueFd> contents_;  // per ns_.shms() index
};

// Hostile-image checks of one IpcNamespace (ids, sizes, counts); unit tested.
Status validate_ipc_namespace(const images::IpcNamespace& ns);

}  // namespace criu
