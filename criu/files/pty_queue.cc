// See pty_queue.h for why the copy runs in a guardian process and why TIOCSTI puts it back.
#include "criu/files/pty_queue.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace criu {
namespace {

// The pty's own buffers hold ~13.8 KiB on 6.18; reading up to 64 KiB means that a queue that grew
// behind our back is read whole, and the check after the put-back reports what did not fit.
constexpr size_t kReadCap = 64 * 1024;
constexpr size_t kGuardianStack = 64 * 1024;

// Shared with the guardian (same memory): inputs, then what it did.
struct Guardian {
    int master;
    char* buf;
    bool kill_parent;
    size_t got = 0;  // bytes read from the master
    size_t put = 0;  // of those, bytes put back
    int err = 0;
    const char* step = "";
};

// The guardian. It runs on its own small stack in criu's memory (CLONE_VM) while the thread
// that made it waits (CLONE_VFORK); it calls thin syscall wrappers only (no allocation, no
// locks: another thread of criu may hold them). Its signal mask, inherited from the caller,
// blocks everything that can be blocked.
int guardian_main(void* arg) {
    auto* g = static_cast<Guardian*>(arg);
    // A session of its own: signals sent to criu's process group or session (a terminal's
    // Ctrl-C, `timeout`, a shell's job control) do not reach it.
    setsid();
    pid_t parent = getppid();
    while (g->got < kReadCap) {
        // poll first: a read on a tty without data would block (O_NONBLOCK cannot be set, the
        // description is the dumped process's). Polling also runs the pty's pending flush work
        // (n_tty_poll), so bytes still in flight are seen.
        struct pollfd p = {g->master, POLLIN, 0};
        int r = poll(&p, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            g->err = errno, g->step = "poll";
            break;
        }
        if (r == 0 || !(p.revents & POLLIN))
            break;
        ssize_t n = read(g->master, g->buf + g->got, kReadCap - g->got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;  // EIO: the slave side is closed and nothing is left
        g->got += size_t(n);
    }
    if (g->kill_parent) {
        kill(parent, SIGKILL);
        for (int i = 0; i < 10000 && getppid() == parent; ++i)
            usleep(1000);
    }
    for (; g->put < g->got; ++g->put) {
        if (ioctl(g->master, TIOCSTI, g->buf + g->put) != 0) {
            g->err = errno, g->step = "TIOCSTI";
            break;
        }
    }
    return g->err != 0;
}

}  // namespace

Expected<std::string> copy_pty_master_queue(int master, const PtyQueueOptions& opts) {
    int queued = 0;
    if (ioctl(master, FIONREAD, &queued) != 0)
        return fail_errno("FIONREAD on the master");
    if (queued <= 0)
        return std::string();
    if (size_t(queued) >= kPtyMasterQueueMax)
        return failf(ENOSPC, "the master's read buffer is full ({} bytes) and more may wait behind it: TIOCSTI could "
                             "not put it all back", queued);
    // Permission checks come before the argument is read: EFAULT means TIOCSTI would work.
    if (ioctl(master, TIOCSTI, nullptr) == 0 || errno != EFAULT)
        return fail_errno("TIOCSTI on the master is not allowed (it needs CAP_SYS_ADMIN), so bytes read could not be "
                          "put back");

    std::string data(kReadCap, '\0');
    auto stack = std::make_unique<char[]>(kGuardianStack);
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack.get()) + kGuardianStack) & ~uintptr_t(15);
    Guardian g{master, data.data(), opts.kill_parent_after_read};

    // The guardian inherits this mask: blocked from its first instruction on. SIGKILL and
    // SIGSTOP cannot be blocked; nobody but the test hook sends them to its pid.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(guardian_main, reinterpret_cast<void*>(top), CLONE_VM | CLONE_VFORK | SIGCHLD, &g);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0)
        return failf(clone_errno, "clone of the guardian that copies the pty queue: {}", std::strerror(clone_errno));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return fail_errno("waiting for the pty queue guardian {}", pid);
    }
    if (g.put < g.got)
        return failf(g.err ? g.err : EIO, "the pty queue guardian read {} bytes and put back only {} ({}: {}): {} "
                                          "bytes of the process's pty output are lost",
                     g.got, g.put, g.step, std::strerror(g.err), g.got - g.put);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return failf(g.err ? g.err : EIO, "the pty queue guardian failed ({}: {}; wait status {:#x})", g.step,
                     std::strerror(g.err), status);
    int after = 0;
    if (ioctl(master, FIONREAD, &after) != 0)
        return fail_errno("FIONREAD on the master after the copy");
    if (size_t(after) != g.got)
        return failf(EIO, "the pty queue held {} bytes before the copy; {} were copied and put back, {} are queued now",
                     queued, g.got, after);
    data.resize(g.got);
    return data;
}

Status put_pty_master_queue(int master, std::string_view data) {
    if (data.size() > kPtyMasterQueueMax)
        return failf(EINVAL, "{} bytes for the pty queue, at most {}", data.size(), kPtyMasterQueueMax);
    for (size_t i = 0; i < data.size(); ++i) {
        if (ioctl(master, TIOCSTI, data.data() + i) != 0)
            return fail_errno("TIOCSTI on the master ({} of {} bytes queued)", i, data.size());
    }
    int queued = 0;
    if (ioctl(master, FIONREAD, &queued) != 0)
        return fail_errno("FIONREAD on the master");
    if (size_t(queued) != data.size())
        return failf(EIO, "{} bytes put into the pty queue, {} queued", data.size(), queued);
    return {};
}

}  // namespace criu
