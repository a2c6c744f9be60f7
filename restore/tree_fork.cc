// The tree part of a restored process (fork_tree_part in restored_child.h): runs in the
// forked copy of criu that becomes the process, before anything of the process is installed.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "criu/core/clone3_args.h"

#include "restore/pid_claim.h"
#include "restore/restored_child.h"

namespace criu {
namespace {

constexpr std::chrono::milliseconds kJoinPoll{1};

const images::PstreeEntry& entry_at(const RestoreTree& t, size_t i) { return (*t.pstree)[i]; }

// setpgid(0, pgid) once the group exists: its creator (leader or stand-in) never waits, so the
// wait ends unless that creator failed, which criu learns from the creator's own report.
Status join_group(const RestoreTree& t, size_t index) {
    const ProcessForkPlan& fp = t.plan->procs[index];
    const pid_t self = entry_at(t, index).pid();
    pid_t target = fp.pgid;
    if (target == 0)
        return {};
    if (target == -1) {
        target = ::getpgid(t.root_pid);
        if (target < 0)
            return fail_errno("pid {}: the group of the root {}", self, t.root_pid);
    }
    if (::getpgrp() == target)
        return {};
    if (target == self) {
        if (::setpgid(0, 0) < 0)
            return fail_errno("pid {}: setpgid to its own group", self);
        return {};
    }
    const auto deadline = std::chrono::steady_clock::now() + kPidWaitLimit;
    while (::setpgid(0, target) < 0) {
        if (errno != EPERM || std::chrono::steady_clock::now() >= deadline)
            return fail_errno("pid {}: joining process group {}", self, target);
        std::this_thread::sleep_for(kJoinPoll);
    }
    return {};
}

[[noreturn]] void become_zombie(const RestoreTree& t, size_t index, int report_fd) {
    const auto& e = entry_at(t, index);
    auto fail_out = [&](const Error& err) { report_child_failure(report_fd, Error(err).add_context(
                                                fmt::format("zombie pid {}", e.pid()))); };
    if (!e.comm().empty()) {
        char name[16] = {};
        e.comm().copy(name, sizeof(name) - 1);
        ::prctl(PR_SET_NAME, name, 0, 0, 0);
    }
    if (t.plan->procs[index].setsid && ::setsid() < 0)
        fail_out(Error(errno, "setsid"));
    if (auto st = join_group(t, index); !st)
        fail_out(st.error());
    const int status = e.exit_code();
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        // Dying of SIGSEGV must not write a core file (the dumped zombie already did, if at all).
        ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        ::signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        ::kill(::getpid(), sig);
        ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
        fail_out(Error(EINVAL, fmt::format("signal {} did not end the process", sig)));
    }
    ::_exit(WEXITSTATUS(status));
}

// What a forked member of the tree runs: a zombie ends, a live process restores itself.
[[noreturn]] void run_member(const RestoreTree& t, size_t index, int parent_report_fd, Log& log) {
    if (entry_at(t, index).zombie()) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        become_zombie(t, index, parent_report_fd);
    }
    run_restored_child(*t.children.at(index), log);
}

// A stand-in for a dead session or group leader, with that leader's pid: takes the session
// (or group), forks its children with CLONE_PARENT so that their parent is the real one,
// and exits. It is single-threaded (a fork of a restoring process), so a raw clone3 is safe.
[[noreturn]] void run_stand_in(const RestoreTree& t, const ForkStep& s, int report_fd, Log& log) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    auto fail_out = [&](const Error& err) {
        report_child_failure(report_fd, Error(err).add_context(fmt::format("stand-in pid {}", s.helper_pid)));
    };
    if (s.helper_setsid ? ::setsid() < 0 : ::setpgid(0, 0) < 0)
        fail_out(Error(errno, s.helper_setsid ? "setsid" : "setpgid"));
    for (size_t c : s.helper_children) {
        pid_t want = entry_at(t, c).pid();
        criu_clone_args ca{};
        ca.flags = CLONE_PARENT;
        ca.set_tid = reinterpret_cast<uint64_t>(&want);
        ca.set_tid_size = 1;
        long r = ::syscall(SYS_clone3, &ca, sizeof(ca));
        if (r == 0)
            run_member(t, c, report_fd, log);
        if (r < 0)
            fail_out(Error(errno, fmt::format("clone3 with set_tid {}: {}", want, find_pid_holder(want).describe(want))));
    }
    ::_exit(0);
}

Status fork_step(const RestoreTree& t, const ForkStep& s, int report_fd, Log& log) {
    UniqueFd pidfd;
    if (s.helper) {
        pid_t r = TRY_CTX(fork_with_pid(s.helper_pid, pidfd, log), "stand-in for the dead leader {}", s.helper_pid);
        if (r == 0)
            run_stand_in(t, s, report_fd, log);
        return {};
    }
    const auto& e = entry_at(t, s.child);
    const pid_t pid = e.pid();
    const uint64_t share = (e.shares_files_with_parent() ? CLONE_FILES : 0) | (e.shares_fs_with_parent() ? CLONE_FS : 0);
    pid_t r = TRY(fork_with_pid(pid, pidfd, log, share));
    if (r == 0)
        run_member(t, s.child, report_fd, log);
    return {};
}

// Waits until every zombie child has exited with its saved status (without reaping it) and
// every stand-in is gone, then drops the SIGCHLD they queued: the dumped process had none of
// those pending (its own pending signals come back through the blob).
Status settle_children(const RestoreTree& t, size_t index) {
    const ProcessForkPlan& fp = t.plan->procs[index];
    const pid_t self = entry_at(t, index).pid();
    auto check_zombie = [&](size_t c) -> Status {
        const auto& e = entry_at(t, c);
        if (!e.zombie())
            return {};
        siginfo_t si{};
        while (::waitid(P_PID, id_t(e.pid()), &si, WEXITED | WNOWAIT) < 0)
            if (errno != EINTR)
                return fail_errno("pid {}: waiting for its zombie {}", self, e.pid());
        const int want = e.exit_code();
        bool same = WIFEXITED(want) ? si.si_code == CLD_EXITED && si.si_status == WEXITSTATUS(want)
                                    : (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) &&
                                          si.si_status == WTERMSIG(want);
        if (!same)
            return failf(ECHILD, "pid {}: zombie {} ended with code {} status {} instead of wait status {:#x}", self,
                         e.pid(), si.si_code, si.si_status, want);
        return {};
    };
    for (const auto* list : {&fp.early, &fp.late}) {
        for (const ForkStep& s : *list) {
            if (!s.helper) {
                TRY_VOID(check_zombie(s.child));
                continue;
            }
            int st = 0;
            while (::waitpid(s.helper_pid, &st, 0) < 0)
                if (errno != EINTR)
                    return fail_errno("pid {}: reaping the stand-in {}", self, s.helper_pid);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return failf(ECHILD, "pid {}: the stand-in for the dead leader {} failed", self, s.helper_pid);
            for (size_t c : s.helper_children)
                TRY_VOID(check_zombie(c));
        }
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    const timespec zero{0, 0};
    while (::sigtimedwait(&chld, nullptr, &zero) == SIGCHLD) {
    }
    return {};
}

}  // namespace

Status fork_tree_part(const RestoreTree& t, size_t index, int report_fd, Log& log) {
    const ProcessForkPlan& fp = t.plan->procs[index];
    const pid_t self = entry_at(t, index).pid();
    // The group first, so that children born in it need not move; a session leader gets its
    // group from setsid(), after the children it leaves in the old session.
    if (!fp.setsid && !fp.join_after_forks)
        TRY_VOID(join_group(t, index));
    for (const ForkStep& s : fp.early)
        TRY_VOID(fork_step(t, s, report_fd, log));
    if (fp.setsid && ::setsid() < 0)
        return fail_errno("pid {}: setsid", self);
    for (const ForkStep& s : fp.late)
        TRY_VOID(fork_step(t, s, report_fd, log));
    if (!fp.setsid && fp.join_after_forks)
        TRY_VOID(join_group(t, index));
    return settle_children(t, index);
}

}  // namespace criu
