#include "migrate/live/lazy_filler.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>

namespace criu {

namespace {

using Clock = std::chrono::steady_clock;

void sigkill(int pidfd) {
    if (pidfd >= 0)
        ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
}

// The sentinel, after fork: async-signal-safe calls only (serve may have other threads).
[[noreturn]] void sentinel_main(int pipe_r, const int* keep, size_t nkeep, const int* pidfds, size_t npid) {
    ::signal(SIGINT, SIG_IGN);  // a Ctrl-C for serve's terminal is not serve dying
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    // Nothing of serve's stays open here (its listening socket, the channel): only the pipe,
    // the uffds and the pidfds (`keep` is sorted).
    unsigned lo = 3;
    for (size_t i = 0; i < nkeep; i++) {
        unsigned fd = unsigned(keep[i]);
        if (fd > lo)
            ::syscall(SYS_close_range, lo, fd - 1, 0);
        lo = std::max(lo, fd + 1);
    }
    ::syscall(SYS_close_range, lo, ~0u, 0);
    char c = 0;
    ssize_t n;
    do
        n = ::read(pipe_r, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'D')
        ::_exit(0);
    for (size_t i = 0; i < npid; i++)
        sigkill(pidfds[i]);
    static const char msg[] = "criu serve: the post-copy filler ended before every page of the migrated process was "
                              "in; killed it (SIGKILL) rather than let it read zero pages\n";
    ssize_t w = ::write(2, msg, sizeof msg - 1);
    (void)w;
    ::_exit(1);
}

}  // namespace

LazyFiller::~LazyFiller() {
    stop_ = true;
    if (thread_.joinable())
        thread_.join();
    if (!waited_) {
        bool all = true;
        for (auto& p : procs_)
            all = all && p->server->finished();
        if (!all)
            kill_all();
        finish_all(all);
    }
}

Status LazyFiller::add(pid_t pid, UniqueFd uffd, LazyTracker tracker, LazyServer::Source src) {
    if (sealed_)
        return fail(EINVAL, "lazy filler: a process added after wait()");
    auto p = std::make_unique<Proc>();
    p->pidfd.reset(int(::syscall(SYS_pidfd_open, pid, 0)));
    if (!p->pidfd)
        return fail_errno("pidfd_open of the restored pid {}", pid);
    const uint64_t total = tracker.total_pages();
    p->server = std::make_unique<LazyServer>(pid, std::move(uffd), std::move(tracker), std::move(src));
    TRY_VOID(spawn_sentinel(*p));
    {
        std::lock_guard lk(mu_);
        stats_.pages_total += total;
        procs_.push_back(std::move(p));
    }
    if (!started_) {
        started_ = true;
        thread_ = std::thread([this] { run(); });
    }
    return {};
}

Status LazyFiller::spawn_sentinel(Proc& p) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0)
        return fail_errno("pipe for the post-copy sentinel");
    UniqueFd r(fds[0]), w(fds[1]);
    // Everything the child needs is built before the fork: it must not allocate.
    int keep[6] = {0, 1, 2, r.get(), p.server->fd(), p.pidfd.get()};
    std::sort(keep, keep + 6);
    int pidfd = p.pidfd.get();
    pid_t c = ::fork();
    if (c < 0)
        return fail_errno("fork of the post-copy sentinel");
    if (c == 0)
        sentinel_main(r.get(), keep, 6, &pidfd, 1);
    p.sentinel = c;
    p.sentinel_pipe = std::move(w);
    log_.debug("serve", "pid {}: post-copy sentinel {} holds its userfaultfd", p.server->pid(), c);
    return {};
}

void LazyFiller::release_sentinel(Proc& p, bool all_filled) {
    if (p.sentinel < 0)
        return;
    if (all_filled) {
        char d = 'D';
        if (::write(p.sentinel_pipe.get(), &d, 1) != 1)
            log_.warn("serve", "cannot tell the post-copy sentinel that all is filled: {}", std::strerror(errno));
    }
    p.sentinel_pipe.reset();
    while (::waitpid(p.sentinel, nullptr, 0) < 0 && errno == EINTR) {
    }
    p.sentinel = -1;
}

void LazyFiller::finish_all(bool all_filled) {
    for (auto& p : procs_)
        release_sentinel(*p, all_filled);
}

void LazyFiller::kill_all() {
    std::lock_guard lk(mu_);
    for (auto& p : procs_)
        sigkill(p->pidfd.get());
}

void LazyFiller::run() {
    // SIGCHLD is for the main thread: restore's release waits for its ptrace stops on a
    // signalfd, and a SIGCHLD taken here cost it a 10 ms poll timeout per syscall stop of the
    // restorer's last steps (~0.25 s inside the pause).
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, nullptr);
    const auto t0 = Clock::now();
    Status st;
    std::vector<LazyServer*> live;
    std::vector<pollfd> pfds;
    while (!stop_ && st) {
        bool sealed = sealed_;  // read before the list: a process added before wait() is seen
        live.clear();
        {
            std::lock_guard lk(mu_);
            for (auto& p : procs_)
                if (!p->server->finished())
                    live.push_back(p->server.get());
        }
        if (live.empty() && sealed)
            break;
        // Faults first: every queued event of every process is answered before the next
        // background window (at most 2 MiB) is copied. Idle (nothing missing yet), wait a bit
        // for a process to be added.
        pfds.clear();
        for (LazyServer* s : live)
            pfds.push_back({s->fd(), POLLIN, 0});
        if (watch_fd_ >= 0)
            pfds.push_back({watch_fd_, POLLIN, 0});
        const bool background = background_;
        (void)::poll(pfds.data(), pfds.size(), live.empty() || stop_fill_at_ || !background ? 20 : 0);
        if (watch_fd_ >= 0 && pfds.back().revents) {
            if (st = on_readable_(); !st)
                break;
        }
        for (LazyServer* s : live) {
            if (st = s->handle_events(); !st)
                break;
            if (s->finished() || !background || (stop_fill_at_ && s->stats().pages_copied >= stop_fill_at_))
                continue;
            if (auto b = s->fill_background(); !b) {
                st = std::unexpected(std::move(b.error()));
                break;
            }
        }
    }
    if (!st) {
        // Never let a process run on with holes.
        kill_all();
        st.error().add_context("post-copy filler: the migrated process was killed");
    }
    std::lock_guard lk(mu_);
    stats_.fill_ms = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
    for (auto& p : procs_) {
        stats_.faults += p->server->stats().faults;
        stats_.pages_copied += p->server->stats().pages_copied;
        stats_.pages_zero += p->server->stats().pages_zero;
    }
    result_ = std::move(st);
}

Status LazyFiller::wait() {
    if (waited_)
        return {};
    sealed_ = true;
    background_ = true;
    if (thread_.joinable())
        thread_.join();
    waited_ = true;
    Status r;
    {
        std::lock_guard lk(mu_);
        r = result_;
    }
    // Every page is in: the uffds can go (the kernel then fills untouched memory with zeros,
    // as it would have anyway), and the sentinels with them.
    finish_all(bool(r));
    for (auto& p : procs_)
        p->server.reset();
    return r;
}

LazyFillStats LazyFiller::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

}  // namespace criu
