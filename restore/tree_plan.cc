#include "restore/tree_plan.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace criu {
namespace {

// The session criu's own children are born in, when the root led none.
constexpr pid_t kCriuSession = -1;

struct Helper {
    size_t parent = 0;
    bool setsid = false;
    bool early = false;
    std::vector<size_t> children;
};

Status check_entries(const std::vector<images::PstreeEntry>& t, std::map<pid_t, size_t>& idx) {
    std::set<pid_t> tids;
    for (size_t i = 0; i < t.size(); ++i) {
        const auto& e = t[i];
        const std::string where = fmt::format("pstree.img record {} (pid {})", i + 1, e.pid());
        if (e.pid() <= 0)
            return failf(EINVAL, "{}: invalid pid", where);
        if (idx.contains(e.pid()))
            return failf(EINVAL, "{}: pid {} appears twice", where, e.pid());
        if (i == 0 && e.ppid() != 0)
            return failf(EINVAL, "{}: the first record is the root and must have parent 0, not {}", where, e.ppid());
        if (i > 0) {
            auto p = idx.find(e.ppid());
            if (p == idx.end())
                return failf(EINVAL, "{}: its parent {} is not listed before it", where, e.ppid());
            if (t[p->second].zombie())
                return failf(EINVAL, "{}: its parent {} is a zombie, which has no children", where, e.ppid());
        }
        if (e.threads_size() == 0 || e.threads(0) != e.pid())
            return failf(EINVAL, "{}: the thread list must start with the pid itself", where);
        if (e.zombie() && e.threads_size() != 1)
            return failf(EINVAL, "{}: a zombie has no threads, the record lists {}", where, e.threads_size());
        for (int32_t tid : e.threads())
            if (tid <= 0 || !tids.insert(tid).second)
                return failf(EINVAL, "{}: tid {} is invalid or used twice in the tree", where, tid);
        if (e.sid() < 0 || e.pgid() < 0)
            return failf(EINVAL, "{}: session {} / group {} are not valid ids", where, e.sid(), e.pgid());
        // 0: a leader criu cannot name. Either it is outside the dumper's pid namespace (criu run
        // in a container entered from outside), or it is the kernel's own session 0, which every
        // process started by pid 1 without setsid is in (the project's CI). That can only be the
        // root's own session or group, which the tree leaves to criu's; another could not be told apart.
        if ((e.sid() == 0 && t[0].sid() != 0) || (e.pgid() == 0 && t[0].pgid() != 0))
            return failf(ENOTSUP, "{}: its session or group leader is outside the dumper's pid namespace (shown as "
                                  "0) but the root's is not: not supported", where);
        if (e.zombie()) {
            int st = e.exit_code();
            bool exited = WIFEXITED(st) && (st & ~0xff00) == 0;
            int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
            // A signal whose default action ignores or stops cannot be what a process died of.
            static constexpr int kNoDeath[] = {SIGCHLD, SIGCONT, SIGURG, SIGWINCH, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU};
            bool killed = sig > 0 && sig <= 64 && (st & ~0xff) == 0 &&
                          std::find(std::begin(kNoDeath), std::end(kNoDeath), sig) == std::end(kNoDeath);
            if (!exited && !killed)
                return failf(EINVAL, "{}: zombie exit status {:#x} is not one a process can end with", where, st);
        }
        if (e.sid() == e.pid() && e.pgid() != e.pid())
            return failf(EINVAL, "{}: a session leader leads its own group, not group {}", where, e.pgid());
        if ((e.shares_files_with_parent() || e.shares_fs_with_parent()) && (i == 0 || e.zombie()))
            return failf(EINVAL, "{}: {} cannot share an fd table or fs with its parent", where,
                         i == 0 ? "the root" : "a zombie");
        idx.emplace(e.pid(), i);
    }
    for (const auto& e : t) {
        // A stand-in for a dead leader takes that pid: it must not be a thread of the tree.
        for (pid_t id : {e.sid(), e.pgid()})
            if (!idx.contains(id) && tids.contains(id))
                return failf(EINVAL, "pstree.img: pid {} is in session/group {}, which is a thread of the tree",
                             e.pid(), id);
    }
    return {};
}

bool is_descendant_or_self(const std::vector<images::PstreeEntry>& t, const std::map<pid_t, size_t>& idx, size_t d,
                           size_t a) {
    for (size_t cur = d;;) {
        if (cur == a)
            return true;
        if (cur == 0)
            return false;
        cur = idx.at(t[cur].ppid());
    }
}

}  // namespace

Expected<TreePlan> plan_tree(const std::vector<images::PstreeEntry>& t) {
    if (t.empty())
        return fail(EINVAL, "pstree.img: no process in the tree");
    std::map<pid_t, size_t> idx;
    TRY_VOID(check_entries(t, idx));
    TreePlan plan;
    plan.procs.resize(t.size());
    const auto& root = t[0];
    const bool root_sess = root.sid() == root.pid();
    const bool root_grp = root.pgid() == root.pid();
    if (!root_sess)
        plan.notes.push_back(fmt::format("the root's session {} is outside the dump: the tree joins criu's session",
                                         root.sid()));
    if (!root_grp)
        plan.notes.push_back(fmt::format("the root's group {} is outside the dump: its members join the root's group",
                                         root.pgid()));

    // Sessions: where each child is born, and through which stand-in.
    std::vector<pid_t> born_in(t.size(), 0);
    std::vector<bool> early(t.size(), false);
    std::vector<pid_t> via(t.size(), 0);  // pid of the stand-in that forks it, 0: its parent
    std::map<pid_t, Helper> helpers;
    born_in[0] = kCriuSession;
    for (size_t c = 1; c < t.size(); ++c) {
        const auto& e = t[c];
        const size_t p = idx.at(e.ppid());
        const auto& pe = t[p];
        const bool parent_leads = pe.sid() == pe.pid();
        // The session the parent ends up in, and the one it was born in (before its setsid).
        const pid_t parent_final = p == 0 && !root_sess ? kCriuSession : pe.sid();
        const pid_t want = !root_sess && e.sid() == root.sid() ? kCriuSession : e.sid();
        if (e.sid() == e.pid() || want == parent_final) {
            born_in[c] = parent_final;
        } else if (parent_leads && want == born_in[p]) {
            born_in[c] = born_in[p];
            early[c] = true;
        } else if (want != kCriuSession && !idx.contains(want)) {
            Helper& h = helpers[want];
            if (!h.children.empty() && h.parent != p)
                return failf(ENOTSUP, "pids {} and {} are in session {}, whose leader is gone, but have different "
                                      "parents: not supported", t[h.children.front()].pid(), e.pid(), want);
            h.parent = p;
            h.setsid = true;
            h.children.push_back(c);
            via[c] = want;
            born_in[c] = want;
        } else {
            return failf(ENOTSUP, "pid {} (parent {}) is in session {}, which its parent cannot give it: the parent "
                                  "was never in it, and its leader {}", e.pid(), e.ppid(), e.sid(),
                         want == kCriuSession ? "is outside the dump" : "is alive in the tree");
        }
    }

    // Groups: who creates each, and who joins.
    for (size_t c = 0; c < t.size(); ++c) {
        const auto& e = t[c];
        ProcessForkPlan& fp = plan.procs[c];
        fp.index = c;
        fp.parent = c == 0 ? 0 : e.ppid();
        fp.setsid = e.sid() == e.pid();
        const pid_t g = e.pgid();
        if (g == e.pid()) {
            fp.pgid = e.pid();
            continue;
        }
        if (!root_grp && g == root.pgid()) {
            fp.pgid = -1;
            continue;
        }
        fp.pgid = g;
        size_t creator;
        if (auto it = idx.find(g); it != idx.end()) {
            creator = it->second;
        } else if (auto h = helpers.find(g); h != helpers.end()) {
            creator = h->second.parent;
            if (via[c] == 0 && c != 0 && h->second.parent == idx.at(e.ppid()) && !h->second.setsid &&
                early[c] == h->second.early) {
                // Another child of the same parent in this dead leader's group: born in it.
                h->second.children.push_back(c);
                via[c] = g;
            }
        } else {
            // A dead group leader (not a session leader): a stand-in under this process's
            // parent, forked where the process itself would have been.
            if (c == 0 || via[c] != 0)
                return failf(ENOTSUP, "pid {} is in group {}, whose leader is gone, and cannot be born in it: not "
                                      "supported", e.pid(), g);
            Helper& nh = helpers[g];
            nh.parent = idx.at(e.ppid());
            nh.early = early[c];
            nh.children.push_back(c);
            via[c] = g;
            creator = nh.parent;
        }
        fp.join_after_forks = is_descendant_or_self(t, idx, creator, c);
    }

    // Fd tables: a user of its parent's table uses its owner's; it must be forked by that parent
    // itself (clone with CLONE_FILES / CLONE_FS), not by a stand-in.
    for (size_t c = 0; c < t.size(); ++c) {
        plan.procs[c].files_owner = c;
        if (c == 0)
            continue;
        const auto& e = t[c];
        if ((e.shares_files_with_parent() || e.shares_fs_with_parent()) && via[c] != 0)
            return failf(ENOTSUP, "pid {} shares its {} with its parent {} but must be born through a stand-in for "
                                  "the dead leader {}: not supported", e.pid(),
                         e.shares_files_with_parent() ? "fd table" : "cwd and root", e.ppid(), via[c]);
        if (e.shares_files_with_parent()) {
            size_t owner = plan.procs[idx.at(e.ppid())].files_owner;
            plan.procs[c].files_owner = owner;
            plan.procs[owner].files_users.push_back(c);
        }
    }

    // The fork lists, children in pstree order; a stand-in where its first child would be.
    for (size_t c = 1; c < t.size(); ++c) {
        const size_t p = idx.at(t[c].ppid());
        ProcessForkPlan& pp = plan.procs[p];
        if (via[c] == 0) {
            ForkStep s;
            s.child = c;
            (early[c] ? pp.early : pp.late).push_back(std::move(s));
            continue;
        }
        const Helper& h = helpers.at(via[c]);
        if (h.children.front() != c)
            continue;
        ForkStep s;
        s.helper = true;
        s.helper_pid = via[c];
        s.helper_setsid = h.setsid;
        s.helper_children = h.children;
        (h.early ? pp.early : pp.late).push_back(std::move(s));
        plan.helper_pids.push_back(via[c]);
        std::vector<pid_t> kids;
        for (size_t k : h.children)
            kids.push_back(t[k].pid());
        plan.notes.push_back(fmt::format("a stand-in with pid {} (the dead {} leader) forks pids {} for pid {}",
                                         via[c], h.setsid ? "session" : "group", fmt::join(kids, ","), t[p].pid()));
    }
    return plan;
}

}  // namespace criu
