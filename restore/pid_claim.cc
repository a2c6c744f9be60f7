#include "restore/pid_claim.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "criu/core/clone3_args.h"

namespace criu {
namespace {

constexpr std::chrono::milliseconds kPoll{10};
constexpr unsigned long kPfExiting = 0x4;  // PF_EXITING, include/linux/sched.h

}  // namespace

std::string PidHolder::describe(pid_t pid) const {
    if (!exists)
        return fmt::format("pid {} is being released by the kernel", pid);
    std::string who = tgid != pid ? fmt::format("thread {} ({}) of process {}", pid, comm, tgid)
                                  : fmt::format("process {} ({})", pid, comm);
    if (state == 'Z')
        return fmt::format("{} is a zombie that its parent {} has not reaped", who, ppid);
    if (exiting)
        return fmt::format("{} is exiting (state {})", who, state);
    return fmt::format("{} is running (state {}, parent {})", who, state, ppid);
}

PidHolder find_pid_holder(pid_t pid) {
    PidHolder h;
    std::ifstream in(fmt::format("/proc/{}/status", pid));
    if (!in)
        return h;  // gone between the EEXIST and now, or never visible: being released
    h.exists = true;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string key;
        ls >> key;
        if (key == "Name:")
            h.comm = line.size() > 6 ? line.substr(6) : "";
        else if (key == "State:")
            ls >> h.state;
        else if (key == "Tgid:")
            ls >> h.tgid;
        else if (key == "PPid:")
            ls >> h.ppid;
    }
    h.exiting = h.state == 'Z' || h.state == 'X';
    if (!h.exiting) {
        // A process SIGKILLed a moment ago (the end of `criu dump`, which does not wait for
        // it) still shows R or D while the kernel frees its memory: PF_EXITING in the flags
        // of /proc/PID/stat (the 9th field, after the parenthesised comm) says it is on its
        // way out.
        std::ifstream st(fmt::format("/proc/{}/stat", pid));
        std::string line;
        std::getline(st, line);
        size_t close = line.rfind(')');
        if (close != std::string::npos) {
            std::istringstream rest(line.substr(close + 1));
            std::string field;
            unsigned long flags = 0;
            for (int i = 3; i <= 9 && rest >> field; ++i)
                if (i == 9)
                    flags = std::strtoul(field.c_str(), nullptr, 10);
            h.exiting = flags & kPfExiting;
        }
    }
    return h;
}

Status wait_pid_free(pid_t pid, const char* what, Log& log, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    bool said = false;
    for (;;) {
        if (::access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0 && errno == ENOENT)
            return {};
        PidHolder h = find_pid_holder(pid);
        if (!h.exists)
            return {};
        // A zombie or a dying process goes away by itself once its parent reaps it; anything
        // else holds the number for good.
        if (!h.exiting || std::chrono::steady_clock::now() >= deadline)
            return failf(EEXIST, "{} {} is taken: {}", what, pid, h.describe(pid));
        if (!said) {
            log.info("restore", "{} {} is still held ({}); waiting up to {} ms", what, pid, h.describe(pid),
                     limit.count());
            said = true;
        }
        std::this_thread::sleep_for(kPoll);
    }
}

namespace {

// One clone3 attempt, made from a helper forked with fork(): glibc's fork takes its malloc and
// stdio locks around the fork, a raw clone3 does not, so a clone3 from a multi-threaded caller
// could hand the child a lock some other thread held. The helper is a proper single-threaded
// copy; CLONE_PARENT makes the new process criu's child all the same (wait, ptrace, parent
// death signal). Returns 0 in the new process, its pid in criu, or -errno.
long clone_from_helper(pid_t pid) {
    int res[2];
    if (::pipe2(res, O_CLOEXEC) < 0)
        return -errno;
    pid_t helper = ::fork();
    if (helper < 0) {
        int e = errno;
        ::close(res[0]);
        ::close(res[1]);
        return -e;
    }
    if (helper == 0) {
        ::close(res[0]);
        pid_t want = pid;
        criu_clone_args ca{};
        // clone3 refuses an exit signal with CLONE_PARENT: the new process takes the helper's
        // (SIGCHLD, from fork) -- copy_process().
        ca.flags = CLONE_PARENT;
        ca.set_tid = reinterpret_cast<uint64_t>(&want);
        ca.set_tid_size = 1;
        long r = ::syscall(SYS_clone3, &ca, sizeof(ca));
        if (r == 0) {
            ::close(res[1]);
            return 0;  // the new process carries on as criu's child
        }
        long out = r > 0 ? r : -errno;
        ssize_t n = ::write(res[1], &out, sizeof(out));
        ::_exit(n == ssize_t(sizeof(out)) ? 0 : 1);
    }
    ::close(res[1]);
    long out = -EIO;
    ssize_t n;
    while ((n = ::read(res[0], &out, sizeof(out))) < 0 && errno == EINTR) {
    }
    ::close(res[0]);
    while (::waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
    }
    return n == ssize_t(sizeof(out)) ? out : -EIO;
}

}  // namespace

namespace {

// One clone3 attempt in the caller, sharing what `share_flags` says. Returns 0 in the new
// process, its pid in the caller, or -errno.
long clone_here(pid_t pid, uint64_t share_flags) {
    pid_t want = pid;
    criu_clone_args ca{};
    ca.flags = share_flags;
    ca.exit_signal = SIGCHLD;
    ca.set_tid = reinterpret_cast<uint64_t>(&want);
    ca.set_tid_size = 1;
    long r = ::syscall(SYS_clone3, &ca, sizeof(ca));
    return r < 0 ? -errno : r;
}

}  // namespace

Expected<pid_t> fork_with_pid(pid_t pid, UniqueFd& pidfd, Log& log, uint64_t share_flags) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + kPidWaitLimit;
    bool waited = false;
    for (;;) {
        long r = share_flags ? clone_here(pid, share_flags) : clone_from_helper(pid);
        if (r == 0)
            return 0;
        if (r > 0) {
            if (r != pid) {  // cannot happen with set_tid; would mean a kernel we do not understand
                ::kill(pid_t(r), SIGKILL);
                return failf(EINVAL, "clone3 with set_tid {} gave pid {}", pid, r);
            }
            // Our own child: nobody else can reap it, so the pid cannot be reused under us.
            pidfd.reset(int(::syscall(SYS_pidfd_open, pid, 0)));
            if (!pidfd) {
                int e = errno;
                ::kill(pid, SIGKILL);
                return fail(e, fmt::format("pidfd_open of the restored pid {}", pid));
            }
            if (waited)
                log.info("restore", "pid {} became free after {} ms", pid,
                         std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
                             .count());
            return pid_t(r);
        }
        int err = int(-r);
        if (err == EEXIST) {
            PidHolder h = find_pid_holder(pid);
            if ((!h.exists || h.exiting) && std::chrono::steady_clock::now() < deadline) {
                if (!waited)
                    log.info("restore", "{}; waiting up to {} ms for it to be released", h.describe(pid),
                             kPidWaitLimit.count());
                waited = true;
                std::this_thread::sleep_for(kPoll);
                continue;
            }
            return failf(EEXIST, "cannot restore pid {}: {}", pid, h.describe(pid));
        }
        if (err == EINVAL) {
            std::ifstream pm("/proc/sys/kernel/pid_max");
            long max = 0;
            pm >> max;
            if (max > 0 && pid >= max)
                return failf(EINVAL, "cannot restore pid {}: above this system's pid_max ({})", pid, max);
        }
        if (err == EPERM)
            return failf(EPERM, "cannot restore pid {}: clone3 set_tid needs CAP_CHECKPOINT_RESTORE (or "
                                "CAP_SYS_ADMIN) in the pid namespace's owner", pid);
        return fail(err, fmt::format("clone3 with set_tid {}", pid));
    }
}

}  // namespace criu
