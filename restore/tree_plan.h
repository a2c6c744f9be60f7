// How a dumped process tree is forked again (KERNEL-NOTES section 5): who forks whom, and in
// which order sessions and process groups are made, computed and checked in criu before
// anything exists.
//
// Rules. A process can only be given a parent by being forked by it, and a session only by
// being born in it or by setsid(). So every process is forked by its dumped parent:
//   - a session leader (sid == pid) calls setsid() right after its fork; children it must
//     leave in the session it was born in are forked before that ("early"), the others after;
//   - a child in a session whose leader is gone (it exited and the child was reparented to a
//     subreaper, the dump's root) is forked through a helper: the parent forks a stand-in with
//     the dead leader's pid, which calls setsid() and forks the child with CLONE_PARENT (so the
//     child's parent is still the right one), then exits and is reaped by the parent;
//   - a process group is created by its leader (setpgid(0, 0)) or, when the leader is gone,
//     by the same kind of stand-in; every other member joins with setpgid(0, pgid), waiting
//     until the group exists (its creator never waits, so nothing can wait for ever);
//   - the root keeps criu's session and group when it led neither; members of those are put
//     into the root's group at restore time;
//   - a zombie is forked like any other process, takes its session and group, and exits with
//     its saved status; its parent never reaps it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "criu/core/error.h"
#include "proto/pstree.pb.h"

namespace criu {

// One fork a process performs, in order.
struct ForkStep {
    size_t child = 0;  // pstree index of the child (helper: unused)
    // A stand-in for a dead session or group leader: pid, whether it starts a session
    // (else only a group), and the pstree indexes of the children it forks for its parent.
    bool helper = false;
    pid_t helper_pid = 0;
    bool helper_setsid = false;
    std::vector<size_t> helper_children;
};

struct ProcessForkPlan {
    size_t index = 0;  // into the pstree
    pid_t parent = 0;  // the expected parent after the fork (0 for the root: criu)
    bool setsid = false;
    std::vector<ForkStep> early;  // forked before setsid (they stay in the inherited session)
    std::vector<ForkStep> late;   // forked after setsid
    // Group to be in: 0 keeps the inherited one, the own pid makes a group, -1 is "the group
    // the root has at restore" (the root led no group of its own), anything else joins.
    pid_t pgid = 0;
    // Join only after forking the children: the group is created inside this process's subtree.
    bool join_after_forks = false;
    // The fd table (fd_table_share.h): installed by the process at pstree index files_owner
    // (its own index unless it shares its parent's); an owner lists the processes using its
    // table besides itself.
    size_t files_owner = 0;
    std::vector<size_t> files_users;
};

struct TreePlan {
    std::vector<ProcessForkPlan> procs;  // by pstree index
    std::vector<pid_t> helper_pids;
    std::vector<std::string> notes;      // what is restored differently, for the log
};

// Checks the tree (unique pids and tids, parents before children and alive, zombies without
// threads or children, sharing with the parent only below the root and by live processes
// their parent forks itself) and plans every fork; refuses, naming the pid, a tree whose sessions
// cannot be rebuilt by forking.
Expected<TreePlan> plan_tree(const std::vector<images::PstreeEntry>& pstree);

}  // namespace criu
