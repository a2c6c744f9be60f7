// The destination's post-copy filler (criu serve): the migrated process runs as soon as its
// non-memory state is restored. Its anonymous memory is left empty, registered with
// userfaultfd (restore's RestoreHooks::on_lazy), and filled here on a thread of its own:
// faults first (the 2 MiB window around each, restore/lazy_fill.h), the rest in address order
// in the background, from the images already on this host (the pre-copy rounds and the final
// delta) or, for post-copy, from the source (a Source that asks it).
//
// The process never reads a zero page where its data should be:
//  - the filler fails (an image cannot be read, the source stops answering, UFFDIO_COPY
//    fails): every process of the migration is killed with SIGKILL, and wait() says why;
//  - criu serve itself dies (SIGKILL, the OOM killer) before every page is in: closing the
//    uffd would let the kernel hand out zero pages, so a sentinel process forked by add()
//    holds a copy of the process's uffd (a fault then blocks instead) and a pidfd of it;
//    when its pipe from serve ends without "all filled" it kills the process, logs to stderr
//    and exits. Only killing both serve and its sentinel at the same instant (a whole cgroup or
//    session) can leave a process to read zeros; that process is gone with them anyway if
//    it is in the same group.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "restore/lazy_fill.h"

namespace criu {

struct LazyFillStats {
    uint64_t pages_total = 0;
    uint64_t faults = 0;
    uint64_t pages_copied = 0;
    uint64_t pages_zero = 0;
    uint64_t fill_ms = 0;  // start() until every page was in
};

class LazyFiller {
public:
    // `stop_fill_at` (tests, CRIU_SERVE_DIE_AFTER_FILL_PAGES): no background filling past
    // this many pages (faults are still served), so that serve can be killed half-way.
    explicit LazyFiller(Log& log, uint64_t stop_fill_at = 0) : log_(log), stop_fill_at_(stop_fill_at) {}
    LazyFiller(const LazyFiller&) = delete;
    LazyFiller& operator=(const LazyFiller&) = delete;
    // Stops the thread; a process whose memory is not all in is killed.
    ~LazyFiller();

    // One process to fill, served from now on (the restorer itself may fault in lazy memory
    // before the process is ready): takes a pidfd of `pid`, forks its sentinel, and starts the
    // filling thread with the first process.
    Status add(pid_t pid, UniqueFd uffd, LazyTracker tracker, LazyServer::Source src);
    // Until this is called only faults are served (the restorers' own, while the processes are
    // held): the background copying would take the CPU the restore needs inside the pause.
    void start_background() { background_ = true; }
    // A process was added (the filler's thread runs and may own the channel, post_copy.h).
    bool started() const { return started_; }
    // Before the first add(): `fd` is polled with the uffds and `on_readable` runs on the
    // filler's thread when it is readable (post-copy: the channel, for a commit or an error
    // between requests). An error there fails the filler like any other.
    void watch(int fd, std::function<Status()> on_readable) {
        watch_fd_ = fd;
        on_readable_ = std::move(on_readable);
    }
    // Blocks until every page of every process is in (or the process ended). An error: the
    // filler failed and every process was killed.
    Status wait();
    // SIGKILL to every process (a failure before the migration's commit point, or after).
    void kill_all();
    LazyFillStats stats() const;

private:
    struct Proc {
        std::unique_ptr<LazyServer> server;
        UniqueFd pidfd;
        pid_t sentinel = -1;
        UniqueFd sentinel_pipe;  // write end: 'D' then close = all filled; EOF alone = kill
    };
    void run();
    Status spawn_sentinel(Proc& p);
    void release_sentinel(Proc& p, bool all_filled);
    void finish_all(bool all_filled);

    Log& log_;
    uint64_t stop_fill_at_;
    int watch_fd_ = -1;
    std::function<Status()> on_readable_;
    mutable std::mutex mu_;  // guards procs_ (added to while the thread runs), result_, stats_
    std::vector<std::unique_ptr<Proc>> procs_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> sealed_{false};  // wait() called: no process will be added
    std::atomic<bool> background_{false};
    bool started_ = false, waited_ = false;
    Status result_;
    LazyFillStats stats_;
};

}  // namespace criu
