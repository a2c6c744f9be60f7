#include "migrate/live/cgroup_throttle.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace criu {

namespace {

// The kernel's default CFS period; v1 refuses a quota under 1 ms, so 1% is the floor.
constexpr long kPeriodUs = 100000;
constexpr double kMinCpus = 0.01;

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= s.size()) {
        size_t e = s.find(sep, at);
        if (e == std::string_view::npos)
            e = s.size();
        out.emplace_back(s.substr(at, e - at));
        at = e + 1;
    }
    return out;
}

Expected<std::string> read_text(const std::string& path) {
    std::ifstream f(path);
    if (!f)
        return fail_errno("cannot read {}", path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

Expected<std::string> read_at(int dirfd, const std::string& name) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", name);
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0)
            return fail_errno("read {}", name);
        if (n == 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

// cgroup files take one value per write(2).
Status write_at(int dirfd, const std::string& name, const std::string& value) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {} for writing", name);
    if (::write(fd.get(), value.data(), value.size()) != ssize_t(value.size()))
        return fail_errno("write '{}' to {}", value, name);
    return {};
}

std::vector<pid_t> pids_in(int dirfd) {
    std::vector<pid_t> out;
    auto text = read_at(dirfd, "cgroup.procs");
    if (!text)
        return out;
    std::istringstream in(*text);
    for (pid_t p; in >> p;)
        out.push_back(p);
    return out;
}

// The tree: pid and its descendants, from /proc/PID/task/TID/children.
std::vector<pid_t> tree_of(pid_t root) {
    std::vector<pid_t> out{root};
    for (size_t i = 0; i < out.size(); i++) {
        std::string tasks = fmt::format("/proc/{}/task", out[i]);
        DIR* d = ::opendir(tasks.c_str());
        if (!d)
            continue;
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            auto kids = read_text(tasks + "/" + e->d_name + "/children");
            if (!kids)
                continue;
            std::istringstream in(*kids);
            for (pid_t k; in >> k;)
                if (std::find(out.begin(), out.end(), k) == out.end())
                    out.push_back(k);
        }
        ::closedir(d);
    }
    return out;
}

std::optional<std::string> cpu_path_of(pid_t pid, const CpuCgroup& like) {
    auto text = read_text(fmt::format("/proc/{}/cgroup", pid));
    if (!text)
        return std::nullopt;
    auto lines = parse_proc_cgroup(*text);
    if (!lines)
        return std::nullopt;
    auto cg = find_cpu_cgroup(*lines);
    if (!cg || cg->v2 != like.v2)
        return std::nullopt;
    return cg->path;
}

// ---- the watchdog: runs in a forked child of a multithreaded process, so raw system calls
// and stack buffers only (no allocation, no locks).

struct WatchdogPlan {
    int pipe = -1, orig = -1, target = -1;
    const char* child = nullptr;        // name under orig; null: the limit is orig's own
    const char* limit_file = nullptr;   // cpu.max or cpu.cfs_quota_us
    const char* unlimited = nullptr;
    const char* saved = nullptr;        // v2 own cgroup: cpu.max to put back
    bool disable_cpu = false;
};

void wd_write(int dirfd, const char* name, const char* value, size_t len) {
    int fd = ::openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)!::write(fd, value, len);
    ::close(fd);
}

size_t wd_len(const char* s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

[[noreturn]] void watchdog_main(const WatchdogPlan& w) {
    struct sigaction sa = {};
    sa.sa_handler = SIG_IGN;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT})
        ::sigaction(sig, &sa, nullptr);
    char c = 0;
    ssize_t n;
    do
        n = ::read(w.pipe, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'R')
        ::_exit(0);
    // criu is gone (or gave up) without undoing the throttle: undo it here.
    if (w.target >= 0)
        wd_write(w.target, w.limit_file, w.unlimited, wd_len(w.unlimited));
    if (w.child && w.target >= 0) {
        char buf[8192];
        int fd = ::openat(w.target, "cgroup.procs", O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? ::read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            ::close(fd);
        for (ssize_t i = 0; got > 0 && i < got;) {
            ssize_t j = i;
            while (j < got && buf[j] != '\n')
                j++;
            if (j > i)
                wd_write(w.orig, "cgroup.procs", buf + i, size_t(j - i));
            i = j + 1;
        }
        ::close(w.target);
        // The processes leave as they are moved or exit; up to a minute for a dying one.
        for (int k = 0; k < 12000 && ::unlinkat(w.orig, w.child, AT_REMOVEDIR) != 0 && errno == EBUSY; k++) {
            struct timespec ts = {0, 5000000};
            ::nanosleep(&ts, nullptr);
        }
    }
    if (w.saved)
        wd_write(w.target, "cpu.max", w.saved, wd_len(w.saved));
    if (w.disable_cpu)
        wd_write(w.orig, "cgroup.subtree_control", "-cpu", 4);
    ::_exit(0);
}

}  // namespace

Expected<std::vector<CgroupLine>> parse_proc_cgroup(std::string_view text) {
    std::vector<CgroupLine> out;
    for (const std::string& line : split(text, '\n')) {
        if (line.empty())
            continue;
        size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos)
            return failf(EINVAL, "malformed cgroup line '{}'", line);
        CgroupLine l;
        char* end = nullptr;
        l.hierarchy = int(std::strtol(line.c_str(), &end, 10));
        if (end != line.c_str() + a)
            return failf(EINVAL, "malformed cgroup line '{}'", line);
        std::string ctl = line.substr(a + 1, b - a - 1);
        if (!ctl.empty())
            l.controllers = split(ctl, ',');
        l.path = line.substr(b + 1);
        if (l.path.empty() || l.path[0] != '/')
            return failf(EINVAL, "cgroup line '{}': the path is not absolute", line);
        out.push_back(std::move(l));
    }
    return out;
}

Expected<CpuCgroup> find_cpu_cgroup(const std::vector<CgroupLine>& lines) {
    // A v1 hierarchy with cpu takes precedence: then cpu is not on the v2 one.
    for (const CgroupLine& l : lines)
        if (std::find(l.controllers.begin(), l.controllers.end(), "cpu") != l.controllers.end()) {
            CpuCgroup c;
            for (size_t i = 0; i < l.controllers.size(); i++)
                c.mount_options += (i ? "," : "") + l.controllers[i];
            c.path = l.path;
            return c;
        }
    for (const CgroupLine& l : lines)
        if (l.hierarchy == 0 && l.controllers.empty()) {
            CpuCgroup c;
            c.v2 = true;
            c.path = l.path;
            return c;
        }
    return fail(ENOTSUP, "no cpu cgroup controller for this process");
}

std::optional<std::string> find_cgroup_mount(std::string_view mountinfo, const CpuCgroup& cg) {
    for (const std::string& line : split(mountinfo, '\n')) {
        // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        size_t dash = line.find(" - ");
        if (dash == std::string::npos)
            continue;
        std::vector<std::string> head = split(std::string_view(line).substr(0, dash), ' ');
        std::vector<std::string> tail = split(std::string_view(line).substr(dash + 3), ' ');
        if (head.size() < 5 || tail.size() < 3 || head[3] != "/")
            continue;
        if (cg.v2) {
            if (tail[0] == "cgroup2")
                return head[4];
            continue;
        }
        if (tail[0] != "cgroup")
            continue;
        std::vector<std::string> opts = split(tail[2], ',');
        bool all = true;
        for (const std::string& c : split(cg.mount_options, ','))
            all = all && std::find(opts.begin(), opts.end(), c) != opts.end();
        if (all)
            return head[4];
    }
    return std::nullopt;
}

Expected<std::unique_ptr<CgroupThrottle>> CgroupThrottle::create(pid_t pid, Log& log) {
    std::unique_ptr<CgroupThrottle> t(new CgroupThrottle(pid, log));
    TRY_VOID_CTX(t->prepare(), "cgroup throttle for pid {}", pid);
    return t;
}

Status CgroupThrottle::prepare() {
    std::string text = TRY(read_text(fmt::format("/proc/{}/cgroup", pid_)));
    cg_ = TRY(find_cpu_cgroup(TRY(parse_proc_cgroup(text))));
    std::string mountinfo = TRY(read_text("/proc/self/mountinfo"));
    if (auto at = find_cgroup_mount(mountinfo, cg_)) {
        root_ = UniqueFd(::open(at->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!root_)
            return fail_errno("open {}", *at);
    } else {
        // Not mounted in this mount namespace: mount it privately, keep the directory
        // open, and detach the mount at once (the open directory keeps it alive).
        const char* tmp = std::getenv("TMPDIR");
        std::string dir = fmt::format("{}/criu-cgroup-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!::mkdtemp(dir.data()))
            return fail_errno("mkdtemp {}", dir);
        int r = cg_.v2 ? ::mount("cgroup2", dir.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr)
                       : ::mount("cgroup", dir.c_str(), "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                 cg_.mount_options.c_str());
        if (r != 0) {
            int e = errno;
            ::rmdir(dir.c_str());
            errno = e;
            return fail_errno("mount the {} cgroup hierarchy on {}", cg_.v2 ? "v2" : cg_.mount_options, dir);
        }
        root_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        int e = errno;
        ::umount2(dir.c_str(), MNT_DETACH);
        ::rmdir(dir.c_str());
        if (!root_) {
            errno = e;
            return fail_errno("open the cgroup hierarchy mounted on {}", dir);
        }
        log_.info("throttle", "the {} cgroup hierarchy is not mounted here: mounted it privately",
                  cg_.v2 ? "v2" : cg_.mount_options);
    }
    std::string rel = cg_.path == "/" ? "." : cg_.path.substr(1);
    orig_ = UniqueFd(::openat(root_.get(), rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!orig_)
        return fail_errno("open the cgroup {} of pid {}", cg_.path, pid_);
    if (cg_.v2) {
        std::string ctl = TRY(read_at(orig_.get(), "cgroup.controllers"));
        auto have = split(ctl.substr(0, ctl.find('\n')), ' ');
        bool cpu_here = std::find(have.begin(), have.end(), "cpu") != have.end();
        // Suitable already: a cgroup of its own (nothing else in it) with the cpu controller.
        std::vector<pid_t> tree = tree_of(pid_);
        std::vector<pid_t> in = pids_in(orig_.get());
        bool own = cg_.path != "/" && !in.empty() &&
                   std::all_of(in.begin(), in.end(),
                               [&](pid_t p) { return std::find(tree.begin(), tree.end(), p) != tree.end(); });
        if (own && cpu_here) {
            saved_cpu_max_ = TRY(read_at(orig_.get(), "cpu.max"));
            while (!saved_cpu_max_.empty() && saved_cpu_max_.back() == '\n')
                saved_cpu_max_.pop_back();
            target_ = UniqueFd(::dup(orig_.get()));
            return start_watchdog();
        }
    }
    // A child of the process's cgroup.
    child_ = fmt::format("criu-throttle-{}.{}", pid_, ::getpid());
    if (cg_.v2) {
        std::string sub = TRY(read_at(orig_.get(), "cgroup.subtree_control"));
        auto on = split(sub.substr(0, sub.find('\n')), ' ');
        if (std::find(on.begin(), on.end(), "cpu") == on.end()) {
            TRY_VOID_CTX(write_at(orig_.get(), "cgroup.subtree_control", "+cpu"),
                         "enable the cpu controller below {} (a non-root cgroup holding processes cannot)",
                         cg_.path);
            enabled_cpu_ = true;
        }
    }
    if (::mkdirat(orig_.get(), child_.c_str(), 0755) != 0) {
        Status st = fail_errno("create the cgroup {}/{}", cg_.path, child_);
        if (enabled_cpu_ && write_at(orig_.get(), "cgroup.subtree_control", "-cpu"))
            enabled_cpu_ = false;
        child_.clear();
        return st;
    }
    target_ = UniqueFd(::openat(orig_.get(), child_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!target_) {
        Status st = fail_errno("open the cgroup {}/{}", cg_.path, child_);
        (void)release(0);
        return st;
    }
    // Writable here? (A read-only or delegated hierarchy fails now, not mid-migration.)
    if (Status st = write_limit(0); !st) {
        (void)release(0);
        return st;
    }
    if (Status st = start_watchdog(); !st) {
        (void)release(0);
        return st;
    }
    return {};
}

Status CgroupThrottle::start_watchdog() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
        return fail_errno("pipe for the throttle's watchdog");
    UniqueFd rd(p[0]), wr(p[1]);
    // Everything the child needs, prepared before the fork.
    static const char* kV2Unlimited = "max 100000";
    WatchdogPlan w;
    w.child = child_.empty() ? nullptr : child_.c_str();
    w.limit_file = cg_.v2 ? "cpu.max" : "cpu.cfs_quota_us";
    w.unlimited = cg_.v2 ? kV2Unlimited : "-1";
    w.saved = child_.empty() ? saved_cpu_max_.c_str() : nullptr;
    w.disable_cpu = enabled_cpu_;
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t c = ::fork();
    if (c < 0) {
        if (devnull >= 0)
            ::close(devnull);
        return fail_errno("fork the throttle's watchdog");
    }
    if (c == 0) {
        // Keep only the pipe and the two cgroup directories (as 3, 4, 5), and the standard
        // fds on /dev/null: a copy of criu's channel or of a caller's pipe must not outlive criu.
        int keep[3] = {::fcntl(rd.get(), F_DUPFD, 100), ::fcntl(orig_.get(), F_DUPFD, 100),
                       ::fcntl(target_.get(), F_DUPFD, 100)};
        for (int i = 0; i < 3; i++)
            ::dup2(keep[i], 3 + i);
        if (devnull >= 0)
            for (int i = 0; i < 3; i++)
                ::dup2(devnull, i);
        ::syscall(SYS_close_range, 6u, ~0u, 0u);
        w.pipe = 3;
        w.orig = 4;
        w.target = 5;
        ::setsid();  // not in criu's process group: a Ctrl-C there is criu's to handle
        watchdog_main(w);
    }
    if (devnull >= 0)
        ::close(devnull);
    watchdog_ = c;
    watchdog_pipe_ = std::move(wr);
    return {};
}

void CgroupThrottle::end_watchdog(bool released) {
    if (watchdog_ < 0)
        return;
    if (released)
        (void)!::write(watchdog_pipe_.get(), "R", 1);
    watchdog_pipe_.reset();
    if (released) {
        int st = 0;
        while (::waitpid(watchdog_, &st, 0) < 0 && errno == EINTR) {
        }
    }
    // Otherwise it undoes what release() could not, and is reaped by whoever inherits it.
    watchdog_ = -1;
}

std::string CgroupThrottle::where() const {
    std::string base = cg_.v2 ? "" : cg_.mount_options + ":";
    if (child_.empty())
        return base + cg_.path;
    return base + (cg_.path == "/" ? "/" : cg_.path + "/") + child_;
}

// cpus 0: no limit (still the cgroup's own setting, written to check it is writable).
Status CgroupThrottle::write_limit(double cpus) {
    long quota = cpus <= 0 ? -1 : std::max(1000L, long(std::lround(cpus * kPeriodUs)));
    if (cg_.v2)
        return write_at(target_.get(), "cpu.max",
                        quota < 0 ? fmt::format("max {}", kPeriodUs) : fmt::format("{} {}", quota, kPeriodUs));
    TRY_VOID(write_at(target_.get(), "cpu.cfs_period_us", std::to_string(kPeriodUs)));
    return write_at(target_.get(), "cpu.cfs_quota_us", std::to_string(quota));
}

Status CgroupThrottle::move_tree_in() {
    if (child_.empty())
        return {};
    for (pid_t p : tree_of(pid_)) {
        auto path = cpu_path_of(p, cg_);
        if (!path || *path != cg_.path)
            continue;  // elsewhere already: not ours to move
        if (Status st = write_at(target_.get(), "cgroup.procs", std::to_string(p)); !st) {
            if (st.error().err() == ESRCH)
                continue;
            return with_context(std::move(st), fmt::format("move pid {} into {}", p, where()));
        }
    }
    return {};
}

Status CgroupThrottle::set(double cpus) {
    if (released_)
        return fail(EINVAL, "the throttle was released");
    cpus = std::max(cpus, kMinCpus);
    TRY_VOID(write_limit(cpus));
    if (!engaged_) {
        engaged_ = true;  // from here on release() has something to undo
        TRY_VOID(move_tree_in());
    }
    cpus_ = cpus;
    log_.info("throttle", "pid {}: limited to {:.0f}% of a CPU in {}", pid_, cpus * 100, where());
    return {};
}

Status CgroupThrottle::lift() {
    if (!engaged_ || released_ || cpus_ <= 0)
        return {};
    TRY_VOID(write_limit(0));
    cpus_ = 0;
    return {};
}

Status CgroupThrottle::release(int wait_ms) {
    if (released_ || !orig_ || (child_.empty() && !target_))
        return {};
    Status st;
    auto keep = [&](Status s) {
        if (!s && st)
            st = std::move(s);
    };
    if (child_.empty()) {
        keep(write_at(target_.get(), "cpu.max", saved_cpu_max_));
    } else {
        if (target_) {
            keep(write_limit(0));
            for (pid_t p : pids_in(target_.get()))
                if (Status s = write_at(orig_.get(), "cgroup.procs", std::to_string(p));
                    !s && s.error().err() != ESRCH)
                    keep(with_context(std::move(s), fmt::format("move pid {} back to {}", p, cg_.path)));
        }
        // A killed process leaves the cgroup as it exits, a moment after SIGKILL.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
        target_.reset();
        while (::unlinkat(orig_.get(), child_.c_str(), AT_REMOVEDIR) != 0) {
            if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) {
                keep(fail_errno("remove the cgroup {}/{}", cg_.path, child_));
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (enabled_cpu_)
            keep(write_at(orig_.get(), "cgroup.subtree_control", "-cpu"));
    }
    released_ = true;
    target_.reset();
    end_watchdog(bool(st));
    if (engaged_)
        log_.info("throttle", "pid {}: throttle released{}", pid_, st ? "" : ": " + st.error().str());
    return st;
}

CgroupThrottle::~CgroupThrottle() {
    Status st = release();
    if (!st)
        log_.warn("throttle", "pid {}: {}", pid_, st.error().str());
}

}  // namespace criu
