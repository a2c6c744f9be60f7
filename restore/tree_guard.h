// Restoring a tree: criu is a child subreaper while the tree is being built, so that every
// process it creates (and every stand-in, zombie and orphan among them) stays below it. On
// failure the guard SIGKILLs every descendant, walking /proc/PID/task/TID/children (they are
// ours: none of them can have been reaped and its pid reused while we hold the tree), and
// reaps them all: nothing is left behind. After a success it stops being a subreaper.
#pragma once

#include "criu/core/error.h"
#include "criu/core/log.h"

namespace criu {

class TreeGuard {
public:
    static Expected<TreeGuard> arm(Log& log);
    TreeGuard(TreeGuard&& o) noexcept : log_(o.log_), armed_(o.armed_), active_(o.active_) { o.active_ = false; }
    TreeGuard(const TreeGuard&) = delete;
    ~TreeGuard();

    // The tree is whole: leave it alone, and stop being a subreaper.
    void disarm();

private:
    explicit TreeGuard(Log& log) : log_(log) {}
    Log& log_;
    bool armed_ = true;
    bool active_ = true;
};

}  // namespace criu
