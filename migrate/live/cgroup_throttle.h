// The convergence controller's brake: while pre-copy rounds do not converge (the process
// dirties memory faster than the link carries it), `criu migrate` throttles the process's
// CPU through a cgroup, which slows the rate it can dirty memory at, and lets it go again
// afterwards. QEMU's auto-converge does the same to a guest's vCPUs.
//
// Where the throttle goes:
//   cgroup v1 with a `cpu` hierarchy (this project's machines: systemd's hybrid layout):
//     a child `criu-throttle-<pid>.<criu pid>` of the process's own cpu cgroup, with
//     cpu.cfs_period_us / cpu.cfs_quota_us; the tree's processes are moved into it.
//   cgroup v2 with the cpu controller: if the process's cgroup is not the root and holds
//     only the tree's processes, its own cpu.max (the old value is put back); otherwise a
//     child cgroup as above with cpu.max (the parent's subtree_control gets +cpu if it
//     lacks it, and loses it again afterwards; the kernel refuses that for a non-root
//     cgroup that holds processes, and then there is no throttle).
// The hierarchy is used where it is mounted; if it is not (a mount namespace without
// /sys/fs/cgroup, as under `ip netns exec`), it is mounted on a private temporary
// directory, opened, and detached at once (every access goes through the open directory).
//
// release() (also the destructor, on every failure path) moves every process still in the
// child back to the cgroup it came from, removes the child, and puts back what was
// changed: the source is left exactly as it was. Only processes of the tree that share the
// root's cgroup are moved. If criu itself dies (SIGKILL, OOM) no destructor runs: a
// watchdog process forked when the cgroup is set up (its only link a pipe; it ignores
// SIGINT/SIGTERM/SIGHUP and holds no other descriptor of criu's) does the same undo when
// the pipe closes without release() having said so.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"

namespace criu {

// One line of /proc/PID/cgroup ("hierarchy-id:controllers:path").
struct CgroupLine {
    int hierarchy = 0;
    std::vector<std::string> controllers;  // empty for the v2 line ("0::/path")
    std::string path;
};
Expected<std::vector<CgroupLine>> parse_proc_cgroup(std::string_view text);

// Where the cpu controller is for a process: v1 (`controllers` of its hierarchy, e.g.
// "cpu,cpuacct") or v2, and the process's path in it. ENOTSUP if it has no cpu controller.
struct CpuCgroup {
    bool v2 = false;
    std::string mount_options;  // v1: the hierarchy's controllers, comma-separated
    std::string path;           // "/" or "/a/b"
};
Expected<CpuCgroup> find_cpu_cgroup(const std::vector<CgroupLine>& lines);

// A mount point of that hierarchy in /proc/self/mountinfo text whose root is "/", if any.
std::optional<std::string> find_cgroup_mount(std::string_view mountinfo, const CpuCgroup& cg);

class CgroupThrottle {
public:
    // Prepares the throttle for the tree of `pid` (nothing is moved or limited yet).
    static Expected<std::unique_ptr<CgroupThrottle>> create(pid_t pid, Log& log);
    ~CgroupThrottle();
    CgroupThrottle(const CgroupThrottle&) = delete;
    CgroupThrottle& operator=(const CgroupThrottle&) = delete;

    // Limits the tree to `cpus` CPUs (e.g. 0.25: a quarter of one CPU; at least 0.01).
    // The first call moves the tree into the throttle cgroup.
    Status set(double cpus);
    // Lifts the limit but leaves the tree where it is: once the final dump has frozen it,
    // the limit only slows what comes next (a killed process frees its memory in its own
    // time slices: 1 GiB at 1% of a CPU would take half a minute).
    Status lift();
    double cpus() const { return cpus_; }
    bool engaged() const { return engaged_; }
    // Where the limit is written (for logs and tests): "cpu:/criu-throttle-12.34" etc.
    std::string where() const;
    // Lifts the limit and undoes every change (see the top). Idempotent. After the tree
    // was killed it waits (up to `wait_ms`) for its processes to leave the child.
    Status release(int wait_ms = 10000);

private:
    CgroupThrottle(pid_t pid, Log& log) : pid_(pid), log_(log) {}
    Status prepare();
    Status write_limit(double cpus);
    Status move_tree_in();
    Status start_watchdog();
    void end_watchdog(bool released);

    pid_t pid_;
    Log& log_;
    CpuCgroup cg_;
    UniqueFd root_;      // the hierarchy's root directory
    UniqueFd orig_;      // the process's cgroup
    UniqueFd target_;    // where the limit goes: the child, or orig_ itself (v2, suitable)
    std::string child_;  // name of the child under orig_; empty when throttling orig_ itself
    std::string saved_cpu_max_;  // v2, own cgroup: what cpu.max held
    bool enabled_cpu_ = false;   // v2: we added +cpu to orig_'s subtree_control
    bool engaged_ = false;
    bool released_ = false;
    double cpus_ = 0;
    UniqueFd watchdog_pipe_;  // write end; the watchdog undoes everything when it closes unsaid
    pid_t watchdog_ = -1;
};

}  // namespace criu
