// criu's side of a restored process once it exists (phases 3 and 4): it owns the process until
// the restore is known to be whole (killing and reaping it on every failure path), reads the
// restorer's reports, lets the threads go (removing the blob area behind them) and, without
// -d, waits for the process and turns its end into criu's exit code.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "restore/blob_args.h"
#include "restore/process_images.h"

namespace criu {

// "exited with status 3", "was killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

class RestoredProcess {
public:
    // `report_fd`/`go_fd`: criu's ends of the two pipes to the restorer.
    RestoredProcess(pid_t pid, UniqueFd pidfd, const RestoredProcessImages& p, const BlobArgs& args,
                    UniqueFd report_fd, UniqueFd go_fd, Log& log);
    RestoredProcess(const RestoredProcess&) = delete;
    // Unless released: SIGKILL, then reap every thread criu traces and the process itself.
    ~RestoredProcess();

    // Blocks until the restorer says every thread is prepared; a failure report or the
    // process's death becomes the error. A process criu did not fork itself (a member of a
    // tree, constructed with an empty pidfd) gets its pidfd here, once it is known to exist.
    // With `on_uffd` (post-copy), the restorer's userfaultfd is duplicated into criu (pidfd_getfd)
    // and handed to it before the restorer may go on to ready.
    Status wait_ready(const std::function<Status(UniqueFd uffd)>& on_uffd = {});
    // Seizes the threads, sends go, follows them out of rt_sigreturn, unmaps the blob area and
    // detaches; without ptrace, sends go and leaves the area (said in the log). Returns whether
    // the area is gone. Ends with the restorer's final report.
    Expected<bool> release();
    // The process is whole: from now on it is not killed on destruction.
    void disarm() { armed_ = false; }

private:
    Status poll_reports();
    Error error_from_report(const blob_report& r);
    Error died(const char* when);
    int reap();

    pid_t pid_;
    UniqueFd pidfd_;
    const RestoredProcessImages& p_;
    const BlobArgs& args_;
    UniqueFd report_fd_;
    UniqueFd go_fd_;
    Log& log_;
    std::vector<pid_t> tids_;
    bool armed_ = true;
    bool reaped_ = false;
    int status_ = 0;
    bool done_ = false;
};

// Waits for the restored process (criu's child) to end: its exit status, or 128+N if signal N
// killed it, as a shell reports it (and says so in the log).
Expected<int> wait_for_exit(pid_t pid, Log& log);

}  // namespace criu
