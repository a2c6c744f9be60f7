#include "restore/tree_guard.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <vector>

#include "criu/core/proc_parse.h"

namespace criu {
namespace {

// Every descendant of `pid` that /proc shows now, parents first.
void collect_descendants(pid_t pid, std::set<pid_t>& seen, std::vector<pid_t>& out) {
    auto tids = list_tasks(pid);
    if (!tids)
        return;
    for (pid_t tid : *tids) {
        auto kids = read_children(pid, tid);
        if (!kids)
            continue;
        for (pid_t c : *kids) {
            if (!seen.insert(c).second)
                continue;
            out.push_back(c);
            collect_descendants(c, seen, out);
        }
    }
}

}  // namespace

Expected<TreeGuard> TreeGuard::arm(Log& log) {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return fail_errno("PR_SET_CHILD_SUBREAPER for the restore");
    return TreeGuard(log);
}

void TreeGuard::disarm() {
    if (!active_)
        return;
    armed_ = false;
    active_ = false;
    ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

TreeGuard::~TreeGuard() {
    if (!active_)
        return;
    if (armed_) {
        // Kill from the top: a child whose parent dies first reparents to us and is found on
        // the next pass; stop when no child is left to reap.
        std::set<pid_t> killed;
        for (;;) {
            std::set<pid_t> seen;
            std::vector<pid_t> all;
            collect_descendants(::getpid(), seen, all);
            for (pid_t p : all)
                if (::kill(p, SIGKILL) == 0)
                    killed.insert(p);
            int st;
            pid_t r = ::waitpid(-1, &st, __WALL);
            if (r < 0 && errno == ECHILD)
                break;
        }
        if (!killed.empty())
            log_.info("restore", "killed the {} processes restored so far", killed.size());
    }
    ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

}  // namespace criu
