#include "criu/dump/process_tree.h"

#include <linux/kcmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "criu/core/proc_parse.h"

namespace criu {
namespace {

// A tree whose processes keep forking faster than we seize them is refused rather than chased.
constexpr int kMaxRescans = 16;

// Children of every thread of `pid` (a child is listed under the thread that forked it).
Expected<std::vector<pid_t>> children_of(pid_t pid) {
    std::vector<pid_t> out;
    for (pid_t tid : TRY(list_tasks(pid))) {
        auto c = read_children(pid, tid);
        if (!c) {
            if (c.error().err() == ENOENT || c.error().err() == ESRCH)
                continue;  // a thread that exited meanwhile
            return std::unexpected(std::move(c.error()));
        }
        out.insert(out.end(), c->begin(), c->end());
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

TreeMember zombie_member(pid_t pid, pid_t parent, const ProcStat& st) {
    TreeMember m;
    m.pid = pid;
    m.ppid = parent;
    m.zombie = true;
    m.pgid = st.pgrp;
    m.sid = st.session;
    m.exit_status = st.exit_code;
    m.comm = st.comm;
    return m;
}

}  // namespace

Expected<std::vector<TreeMember>> list_tree(pid_t root) {
    std::vector<TreeMember> out;
    std::set<pid_t> seen{root};
    TreeMember r;
    r.pid = root;
    out.push_back(r);
    for (size_t i = 0; i < out.size(); ++i) {
        if (out[i].zombie)
            continue;
        auto kids = children_of(out[i].pid);
        if (!kids) {
            if (i > 0 && (kids.error().err() == ENOENT || kids.error().err() == ESRCH))
                continue;  // exited since it was listed: the tree is still running
            return std::unexpected(std::move(kids.error()));
        }
        for (pid_t c : *kids) {
            if (!seen.insert(c).second)
                continue;
            auto st = read_stat(c);
            if (!st)
                continue;
            if (st->state == 'Z' || st->state == 'X') {
                out.push_back(zombie_member(c, out[i].pid, *st));
                continue;
            }
            TreeMember m;
            m.pid = c;
            m.ppid = out[i].pid;
            out.push_back(m);
        }
    }
    return out;
}

namespace {

bool kcmp_same(pid_t a, pid_t b, int type) { return ::syscall(SYS_kcmp, a, b, type, 0, 0) == 0; }

}  // namespace

ParentSharing parent_sharing(const TreeMember& m) {
    if (m.ppid <= 0 || m.zombie)
        return {};
    return ParentSharing{kcmp_same(m.pid, m.ppid, KCMP_FILES), kcmp_same(m.pid, m.ppid, KCMP_FS)};
}

std::vector<std::string> tree_sharing_problems(const std::vector<TreeMember>& live) {
    struct Kind {
        int type;
        const char* what;
        bool with_parent_ok;  // restorable when each sharer but the topmost shares with its parent
    };
    static constexpr Kind kKinds[] = {
        {KCMP_VM, "share one address space (clone(CLONE_VM) without CLONE_THREAD, or a vfork child that has "
                  "not yet called exec): not supported", false},
        {KCMP_FILES, "share one fd table (clone(CLONE_FILES))", true},
        {KCMP_FS, "share cwd, root and umask (clone(CLONE_FS))", true},
    };
    std::vector<pid_t> pids;
    std::map<pid_t, pid_t> parent;
    for (const TreeMember& m : live) {
        pids.push_back(m.pid);
        parent[m.pid] = m.ppid;
    }
    std::vector<std::string> problems;
    for (const Kind& k : kKinds) {
        // The root's parent is outside the tree: what the root shares with it cannot come back.
        if (k.with_parent_ok && !live.empty() && live[0].ppid > 0 && kcmp_same(live[0].pid, live[0].ppid, k.type))
            problems.push_back(fmt::format("the root {} and its parent {} (outside the dump) {}: not supported",
                                           live[0].pid, live[0].ppid, k.what));
        // One class per object: the first pid seen with it, and every pid that shares it.
        std::vector<std::vector<pid_t>> classes;
        for (pid_t p : pids) {
            bool placed = false;
            for (auto& c : classes) {
                if (::syscall(SYS_kcmp, c.front(), p, k.type, 0, 0) == 0) {
                    c.push_back(p);
                    placed = true;
                    break;
                }
            }
            if (!placed)
                classes.push_back({p});
        }
        for (const auto& c : classes) {
            if (c.size() < 2)
                continue;
            if (!k.with_parent_ok) {
                problems.push_back(fmt::format("pids {} {}", fmt::join(c, ", "), k.what));
                continue;
            }
            // The topmost sharer (parents come first) forks the others, or their parents do.
            for (size_t i = 1; i < c.size(); ++i) {
                pid_t pp = parent[c[i]];
                if (std::find(c.begin(), c.end(), pp) == c.end())
                    problems.push_back(fmt::format("pids {} {}, but pid {} does not share it with its parent {} "
                                                   "(its sharing parent is gone): not supported",
                                                   fmt::join(c, ", "), k.what, c[i], pp));
            }
        }
    }
    // Namespaces are the root's for the whole tree at restore (the IPC namespace is made once).
    static constexpr const char* kNamespaces[] = {"ipc", "mnt", "net", "pid", "uts", "user", "cgroup", "time"};
    for (const char* ns : kNamespaces) {
        struct stat root_st;
        if (pids.empty() || ::stat(fmt::format("/proc/{}/ns/{}", pids[0], ns).c_str(), &root_st) < 0)
            continue;
        std::vector<pid_t> other;
        for (size_t i = 1; i < pids.size(); ++i) {
            struct stat st;
            if (::stat(fmt::format("/proc/{}/ns/{}", pids[i], ns).c_str(), &st) == 0 &&
                (st.st_ino != root_st.st_ino || st.st_dev != root_st.st_dev))
                other.push_back(pids[i]);
        }
        if (!other.empty())
            problems.push_back(fmt::format("pids {} are in another {} namespace than the root {}: not supported",
                                           fmt::join(other, ", "), ns, pids[0]));
    }
    return problems;
}

Expected<std::unique_ptr<SeizedTree>> SeizedTree::seize(pid_t root, Log& log) {
    std::unique_ptr<SeizedTree> t(new SeizedTree(log));
    std::unique_ptr<SeizedProcess> sp = TRY(SeizedProcess::seize(root, log));
    TreeMember r;
    r.pid = root;
    r.sp = sp.get();
    t->members_.push_back(r);
    t->procs_.push_back(std::move(sp));

    // Breadth first: every member is stopped before its children are listed.
    bool found = false;
    for (size_t i = 0; i < t->members_.size(); ++i)
        TRY_VOID(t->add_children_of(i, found));
    // A member that exited before we reached it left its children to a subreaper of the tree
    // (or to init, outside it): list everyone's children again until nothing is new.
    for (int pass = 0;; ++pass) {
        if (pass >= kMaxRescans)
            return failf(EAGAIN, "the tree below pid {} kept changing while being seized", root);
        found = false;
        for (size_t i = 0; i < t->members_.size(); ++i)
            TRY_VOID(t->add_children_of(i, found));
        if (!found)
            break;
    }
    size_t zombies = size_t(std::count_if(t->members_.begin(), t->members_.end(), [](auto& m) { return m.zombie; }));
    log.info("seize", "tree of pid {}: {} processes seized ({} threads), {} zombies", root, t->procs_.size(),
             t->thread_count(), zombies);
    return t;
}

Status SeizedTree::add_children_of(size_t index, bool& found) {
    if (members_[index].zombie)
        return {};
    pid_t parent = members_[index].pid;
    std::vector<pid_t> kids = TRY_CTX(children_of(parent), "listing the children of pid {}", parent);
    for (pid_t c : kids) {
        if (std::any_of(members_.begin(), members_.end(), [&](const TreeMember& m) { return m.pid == c; }))
            continue;
        found = true;
        TRY_VOID(add_child(c, parent));
    }
    return {};
}

Status SeizedTree::add_child(pid_t child, pid_t parent) {
    auto st = read_stat(child);
    if (!st)
        return {};  // reaped meanwhile (a parent that ignores SIGCHLD): no longer part of the tree
    if (st->state != 'Z' && st->state != 'X') {
        auto sp = SeizedProcess::seize(child, log_);
        if (sp) {
            if ((*sp)->ppid() != parent)
                return failf(ESRCH, "pid {} moved from parent {} to {} while the tree was being seized", child,
                             parent, (*sp)->ppid());
            TreeMember m;
            m.pid = child;
            m.ppid = parent;
            m.sp = sp->get();
            members_.push_back(m);
            procs_.push_back(std::move(*sp));
            return {};
        }
        if (sp.error().err() != ESRCH)
            return std::unexpected(std::move(sp.error()).add_context(fmt::format("child of pid {}", parent)));
        // It exited between the listing and the seize: a zombie now, or gone.
        st = read_stat(child);
        if (!st)
            return {};
        if (st->state != 'Z' && st->state != 'X')
            return std::unexpected(std::move(sp.error()));
    }
    log_.info("seize", "pid {} (child of {}) is a zombie with wait status {:#x}", child, parent, st->exit_code);
    members_.push_back(zombie_member(child, parent, *st));
    return {};
}

size_t SeizedTree::thread_count() const {
    size_t n = 0;
    for (const auto& p : procs_)
        n += p->threads().size();
    return n;
}

SeizedTree::~SeizedTree() {
    while (!procs_.empty())
        procs_.pop_back();
}

Status SeizedTree::resume() {
    Status first;
    for (size_t i = procs_.size(); i-- > 0;) {
        auto r = procs_[i]->resume();
        if (!r && first)
            first = std::move(r);
    }
    return first;
}

Status SeizedTree::kill(const std::function<void()>& signalled, bool reap) {
    // Every SIGKILL first: the processes tear their memory down in parallel (~20 ms for 50 MiB
    // each here) instead of one after the other while we wait for each exit. They are all
    // still stopped by ptrace, so none runs in between.
    for (const auto& p : procs_)
        ::kill(p->pid(), SIGKILL);
    if (signalled)
        signalled();
    Status first;
    for (size_t i = procs_.size(); i-- > 0;) {
        auto r = procs_[i]->kill(reap);
        if (!r && first)
            first = std::move(r);
    }
    return first;
}

}  // namespace criu
