// The process tree below a dump's root: found through /proc/PID/task/TID/children (every
// thread's children: a child belongs to the thread that forked it), seized top-down.
//
// Order: parents before children (breadth first from the root), the order pstree.img keeps.
// Zombies (state Z) are recorded, not seized: pid, parent, group, session and the wait status
// the parent will get (/proc/PID/stat field 52).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/seized_process.h"

namespace criu {

struct TreeMember {
    pid_t pid = 0;
    pid_t ppid = 0;  // 0 for the root
    bool zombie = false;
    // Zombies only (live members read theirs while seized).
    pid_t pgid = 0;
    pid_t sid = 0;
    int exit_status = 0;  // wait(2) status
    std::string comm;
    SeizedProcess* sp = nullptr;  // live members: owned by the SeizedTree
};

// The members of the tree below `root` as /proc shows them now, nothing stopped (pre-flight:
// the tree may still change). Live processes and zombies, parents first.
Expected<std::vector<TreeMember>> list_tree(pid_t root);

// Processes of the tree (live members, parents first, the root first) that share what this
// dumper cannot restore, found with kcmp (KERNEL-NOTES section 6): an address space (CLONE_VM
// without CLONE_THREAD, e.g. a vfork child or clone(CLONE_VM)); an fd table (CLONE_FILES) or
// cwd/root/umask (CLONE_FS) unless every process sharing one, but the topmost, shares it with
// its parent (the restore forks it with that clone flag), and never with the root's parent
// outside the tree. One message per shared object, naming the pids; also processes in another
// namespace than the root: the restore makes the tree's namespaces once. Empty when all is well.
std::vector<std::string> tree_sharing_problems(const std::vector<TreeMember>& live);

// What a live member shares with its parent in the tree (kcmp KCMP_FILES, KCMP_FS).
struct ParentSharing {
    bool files = false;
    bool fs = false;
};
ParentSharing parent_sharing(const TreeMember& m);

class SeizedTree {
public:
    // Seizes every thread of every live process below `root` (root included). A process is
    // seized only after its parent is stopped, so its list of children can no longer grow by
    // fork; descendants orphaned meanwhile (reparented to a subreaper already listed) are
    // caught by listing every member's children again until a pass finds nothing new.
    static Expected<std::unique_ptr<SeizedTree>> seize(pid_t root, Log& log);

    SeizedTree(const SeizedTree&) = delete;
    SeizedTree& operator=(const SeizedTree&) = delete;
    // Resumes every process still seized (the SeizedProcess destructors), children first.
    ~SeizedTree();

    const std::vector<TreeMember>& members() const { return members_; }
    SeizedProcess& root() { return *procs_.front(); }
    size_t live_count() const { return procs_.size(); }
    size_t thread_count() const;

    // Resumes every process; returns the first error (every process is still tried).
    Status resume();
    // SIGKILLs every process at once, calls `signalled` (from then on no process can run
    // again: the dump's frozen interval ends there), then collects the exits (a 1 GiB process
    // takes ~60-260 ms to tear its memory down) unless `reap` is false (see SeizedProcess::kill).
    Status kill(const std::function<void()>& signalled = {}, bool reap = true);

private:
    explicit SeizedTree(Log& log) : log_(log) {}
    Status add_children_of(size_t index, bool& found);
    Status add_child(pid_t child, pid_t parent);

    Log& log_;
    std::vector<TreeMember> members_;
    std::vector<std::unique_ptr<SeizedProcess>> procs_;
};

}  // namespace criu
