#include "restore/restored_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "restore/blob_report.h"
#include "restore/sigframe.h"
#include "restore/sigreturn_catcher.h"

namespace criu {

std::string describe_wait_status(int st) {
    if (WIFEXITED(st))
        return fmt::format("exited with status {}", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return fmt::format("was killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
    return fmt::format("changed state ({:#x})", st);
}

RestoredProcess::RestoredProcess(pid_t pid, UniqueFd pidfd, const RestoredProcessImages& p, const BlobArgs& args,
                                 UniqueFd report_fd, UniqueFd go_fd, Log& log)
    : pid_(pid), pidfd_(std::move(pidfd)), p_(p), args_(args), report_fd_(std::move(report_fd)),
      go_fd_(std::move(go_fd)), log_(log), tids_(p.entry.threads().begin(), p.entry.threads().end()) {}

RestoredProcess::~RestoredProcess() {
    if (!armed_)
        return;
    if (pidfd_)
        ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    reap();
}

int RestoredProcess::reap() {
    if (reaped_)
        return status_;
    // A thread criu still traces stays a zombie for criu until criu reaps it, and the leader
    // cannot be reaped before its threads. ECHILD for threads not traced (or gone).
    for (pid_t tid : tids_)
        if (tid != pid_)
            while (::waitpid(tid, nullptr, __WALL) < 0 && errno == EINTR) {
            }
    int st = -1;  // stays -1 for a process that is not criu's child (a member of a tree)
    while (::waitpid(pid_, &st, __WALL) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    status_ = st;
    return st;
}

Error RestoredProcess::died(const char* when) {
    int st = reap();
    return Error(ECHILD, fmt::format("pid {}: the restored process {} {} without a report from the restorer", pid_,
                                     st == -1 ? "ended" : describe_wait_status(st), when));
}

Error RestoredProcess::error_from_report(const blob_report& r) {
    reap();  // the restorer ended the process right after reporting
    return report_to_error(r, args_, p_);
}

Status RestoredProcess::wait_ready(const std::function<Status(UniqueFd uffd)>& on_uffd) {
    for (;;) {
        ReportRead rr = TRY(read_blob_report(report_fd_.get()));
        if (rr.kind == ReportRead::Eof)
            return std::unexpected(died("while restoring"));
        if (rr.report.step != BLOB_STEP_READY && (rr.report.step != BLOB_STEP_LAZY_UFFD || !on_uffd))
            return std::unexpected(error_from_report(rr.report));
        if (!pidfd_) {
            // A report means the restorer runs (waiting for criu): the process exists and its
            // pid cannot be reused yet.
            pidfd_.reset(int(::syscall(SYS_pidfd_open, pid_, 0)));
            if (!pidfd_)
                return fail_errno("pidfd_open of the restored pid {}", pid_);
        }
        if (rr.report.step == BLOB_STEP_READY)
            return {};
        // The restorer keeps its copy open until after go, so the number stays valid.
        UniqueFd uffd(int(::syscall(SYS_pidfd_getfd, pidfd_.get(), int(rr.report.detail), 0)));
        if (!uffd)
            return fail_errno("pid {}: taking the restorer's userfaultfd (fd {})", pid_, rr.report.detail);
        TRY_VOID(on_uffd(std::move(uffd)));
    }
}

// Reads whatever reports are queued (non-blocking): DONE is noted, anything else is the error.
Status RestoredProcess::poll_reports() {
    ReportRead rr = TRY(read_blob_report(report_fd_.get()));
    if (rr.kind != ReportRead::Got)
        return {};
    if (rr.report.step == BLOB_STEP_DONE) {
        done_ = true;
        return {};
    }
    return std::unexpected(report_to_error(rr.report, args_, p_));
}

Expected<bool> RestoredProcess::release() {
    const BlobLayout& l = args_.layout();
    if (::fcntl(report_fd_.get(), F_SETFL, O_NONBLOCK) < 0)
        return fail_errno("fcntl on the report pipe");
    std::map<pid_t, uint64_t> rips;
    for (const auto& t : p_.core.threads())
        rips[t.tid()] = (*decode_user_regs(t.gpregs()))[kRip];  // checked in phase 1

    bool area_removed = false;
    auto catcher = SigreturnCatcher::seize(pid_, tids_, log_);
    if (catcher) {
        Status st = catcher->release(go_fd_.get(), l.base, l.base + l.size, l.base + BLOB_SYSCALL_INSN_OFFSET, rips,
                                     [this] { return poll_reports(); });
        if (!st) {
            // A report from the blob says more than ptrace's view of the death.
            Status more = poll_reports();
            if (auto s = catcher->exit_status()) {
                reaped_ = true;
                status_ = *s;
            }
            return std::unexpected(more ? st.error() : more.error());
        }
        area_removed = true;
    } else {
        log_.warn("restore", "pid {}: cannot trace the restored threads ({}); the restorer area {:#x}-{:#x} stays "
                             "mapped", pid_, catcher.error().str(), l.base, l.base + l.size);
        char go = 'G';
        if (::write(go_fd_.get(), &go, 1) != 1)
            return fail_errno("pid {}: writing go to the restorer", pid_);
    }
    go_fd_.reset();
    if (::fcntl(report_fd_.get(), F_SETFL, 0) < 0)
        return fail_errno("fcntl on the report pipe");
    while (!done_) {
        ReportRead rr = TRY(read_blob_report(report_fd_.get()));
        if (rr.kind == ReportRead::Eof)
            return std::unexpected(died("at the end of the restore"));
        if (rr.report.step != BLOB_STEP_DONE)
            return std::unexpected(error_from_report(rr.report));
        done_ = true;
    }
    return area_removed;
}

Expected<int> wait_for_exit(pid_t pid, Log& log) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return fail_errno("waiting for restored pid {}", pid);
    }
    if (WIFSIGNALED(st)) {
        log.warn("restore", "restored pid {} {}", pid, describe_wait_status(st));
        return 128 + WTERMSIG(st);
    }
    log.info("restore", "restored pid {} {}", pid, describe_wait_status(st));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

}  // namespace criu
