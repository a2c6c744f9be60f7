#include "criu/core/seized_process.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "criu/core/proc_parse.h"

namespace criu {

namespace {
// A stopped thread cannot create threads, so two or three passes suffice; the cap only turns a
// kernel surprise into an error instead of a hang.
constexpr int kMaxSeizeRounds = 64;

// Whether a thread SIGKILLed a moment ago has started to exit: gone, a zombie, or PF_EXITING
// (0x4) in the flags of /proc/PID/task/TID/stat (the 9th field). Set at the start of do_exit,
// before the memory is freed; a thread that has not been scheduled since the SIGKILL has not.
bool thread_exiting(pid_t pid, pid_t tid) {
    std::ifstream in(fmt::format("/proc/{}/task/{}/stat", pid, tid));
    std::string line;
    if (!in || !std::getline(in, line))
        return true;
    size_t close = line.rfind(')');
    if (close == std::string::npos)
        return true;
    std::istringstream rest(line.substr(close + 1));
    std::string state, field;
    rest >> state;
    for (int i = 4; i <= 9; ++i)
        rest >> field;
    return state == "Z" || state == "X" || (std::strtoul(field.c_str(), nullptr, 10) & 0x4);
}
}  // namespace

Expected<std::unique_ptr<SeizedProcess>> SeizedProcess::seize(pid_t pid, Log& log) {
    ProcStatus st = TRY(read_status(pid));
    if (st.tgid != pid)
        return failf(EINVAL, "pid {} is a thread of process {}; give the process id", pid, st.tgid);
    if (st.state == 'Z' || st.state == 'X')
        return failf(ESRCH, "pid {} is a zombie (exited, not yet reaped)", pid);
    if (st.tracer_pid != 0)
        return failf(EBUSY, "pid {} is already traced by pid {}", pid, st.tracer_pid);
    std::unique_ptr<SeizedProcess> sp(new SeizedProcess(pid, log));
    sp->ppid_ = st.ppid;
    TRY_VOID(sp->seize_all());

    // A pid that was reused between our first look and the seize would show another parent.
    ProcStatus after = TRY(read_status(pid));
    if (after.ppid != sp->ppid_)
        return failf(ESRCH, "pid {} changed parent ({} -> {}) while being seized: it exited and the pid was reused",
                     pid, sp->ppid_, after.ppid);
    log.info("seize", "pid {}: seized {} thread(s)", pid, sp->threads_.size());
    return sp;
}

Status SeizedProcess::seize_all() {
    ProcStatus st = TRY(read_status(pid_));
    bool suspend_seccomp = st.seccomp != 0;
    std::set<pid_t> seen;
    for (int round = 0;; ++round) {
        if (round >= kMaxSeizeRounds)
            return failf(EAGAIN, "pid {}: threads keep appearing after {} rounds of seizing", pid_, round);
        std::vector<pid_t> tids = TRY_CTX(list_tasks(pid_), "seizing pid {}", pid_);
        if (std::find(tids.begin(), tids.end(), pid_) == tids.end())
            return failf(ESRCH, "pid {} exited while being seized", pid_);
        std::vector<std::unique_ptr<Task>> fresh;
        for (pid_t tid : tids) {
            if (!seen.insert(tid).second)
                continue;
            auto t = Task::seize(pid_, tid, log_, suspend_seccomp);
            if (!t) {
                // A thread that exits between listing and seizing is simply not part of the dump.
                if (t.error().err() == ESRCH && tid != pid_)
                    continue;
                return std::unexpected(std::move(t.error()));
            }
            auto r = (*t)->interrupt();
            if (!r && !(r.error().err() == ESRCH && tid != pid_))
                return std::unexpected(std::move(r.error()));
            fresh.push_back(std::move(*t));
        }
        if (fresh.empty())
            break;
        for (auto& t : fresh) {
            auto r = t->wait_for_stop();
            if (!r) {
                if (r.error().err() == ESRCH && t->tid() != pid_) {
                    log_.debug("seize", "tid {} of pid {} exited while being seized", t->tid(), pid_);
                    continue;
                }
                return std::unexpected(std::move(r.error()));
            }
            threads_.push_back(std::move(t));
        }
    }
    std::sort(threads_.begin(), threads_.end(), [&](const auto& a, const auto& b) {
        if ((a->tid() == pid_) != (b->tid() == pid_))
            return a->tid() == pid_;
        return a->tid() < b->tid();
    });
    if (threads_.empty() || threads_.front()->tid() != pid_)
        return failf(ESRCH, "pid {}: main thread is gone", pid_);
    return {};
}

SeizedProcess::~SeizedProcess() {
    if (done_)
        return;
    auto r = resume();
    if (!r)
        log_.warn("seize", "while resuming pid {}: {}", pid_, r.error().str());
}

Status SeizedProcess::resume() {
    done_ = true;
    Status first;
    for (auto& t : threads_) {
        auto r = t->detach();
        if (!r && first)
            first = std::move(r);
    }
    if (first)
        log_.info("seize", "pid {}: resumed {} thread(s)", pid_, threads_.size());
    return first;
}

Status SeizedProcess::kill(bool reap) {
    done_ = true;
    if (::kill(pid_, SIGKILL) < 0 && errno != ESRCH)
        return fail_errno("cannot SIGKILL pid {}", pid_);
    if (!reap) {
        // Not the exit (the memory teardown), but its start: once every thread is exiting,
        // nothing of the process can run again and `ps` shows it on its way out. That takes a
        // scheduling round, not ~0.1-0.3 s per GiB.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (auto& t : threads_) {
            while (!thread_exiting(pid_, t->tid()) && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            t->forget_after_kill();
        }
        log_.info("seize", "pid {}: killed (exiting; the end of its exit is not waited for)", pid_);
        return {};
    }
    // The leader's exit is reported only after every other thread is gone: reap those first.
    // When we are also the real parent (tests, or a future tree dumper killing its own
    // children) the leader's zombie is left for the parent's waitpid.
    for (size_t i = threads_.size(); i-- > 0;)
        threads_[i]->reap_after_kill(i == 0 && ppid_ == getpid());
    log_.info("seize", "pid {}: killed", pid_);
    return {};
}

}  // namespace criu
