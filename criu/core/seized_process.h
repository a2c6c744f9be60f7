// SeizedProcess: every thread of one process seized and stopped, as one RAII object. The
// destructor resumes every thread as it was (or reaps them after kill()), on every path.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/task.h"

namespace criu {

class SeizedProcess {
public:
    // Seizes and interrupts every thread of `pid`. Threads born while this runs are caught by
    // re-reading /proc/PID/task until a pass finds none that is not yet stopped (a stopped
    // thread cannot clone). Checks that the pid was not reused (same ppid before and after).
    static Expected<std::unique_ptr<SeizedProcess>> seize(pid_t pid, Log& log);

    SeizedProcess(const SeizedProcess&) = delete;
    SeizedProcess& operator=(const SeizedProcess&) = delete;
    ~SeizedProcess();

    pid_t pid() const { return pid_; }
    // Main thread first, then the others in ascending tid order.
    const std::vector<std::unique_ptr<Task>>& threads() const { return threads_; }
    Task& main_thread() { return *threads_.front(); }
    pid_t ppid() const { return ppid_; }

    // Resumes every thread; returns the first error (every thread is still tried).
    Status resume();
    // SIGKILL while every thread is still seized (so nothing runs in between), then collects
    // the exits. This is how a dump ends without --leave-running. Without `reap` (a caller
    // that exits right away) the exits are not waited for: a tracer collects a killed tracee
    // only after the kernel has freed all its memory (~0.1-0.3 s per GiB here), and until it
    // does the real parent cannot reap it; the tracer's own exit hands it over.
    Status kill(bool reap = true);

private:
    SeizedProcess(pid_t pid, Log& log) : pid_(pid), log_(log) {}
    Status seize_all();

    pid_t pid_;
    pid_t ppid_ = 0;
    Log& log_;
    std::vector<std::unique_ptr<Task>> threads_;
    bool done_ = false;
};

}  // namespace criu
