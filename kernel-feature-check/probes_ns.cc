// Probes for namespaces (each one really unshared, in a forked child) and for the
// cgroup freezers (a child cgroup is created, a child process frozen and thawed,
// and everything removed again).
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <vector>

#include "kernel-feature-check/kernel_abi.h"
#include "kernel-feature-check/probe_util.h"

namespace criu::kfc {

namespace {

constexpr int kTimeoutMs = kProbeTimeoutMs;

Expected<ino_t> ns_inode(const std::string& name) {
    struct stat st {};
    std::string path = "/proc/self/ns/" + name;
    if (stat(path.c_str(), &st) < 0)
        return fail_errno("stat {}", path);
    return st.st_ino;
}

// Forks a grandchild running fn in the (new) namespaces and returns its exit code.
int in_grandchild(const std::function<int()>& fn) {
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0)
        _exit(fn());
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// unshare(flag) in a forked child and check that the namespace really changed.
// pid and time namespaces apply to children only, hence *_for_children.
// `extra` runs after unshare and gets the euid from before it: inside a new user
// namespace without a map, geteuid() already reads as the overflow uid 65534.
ProbeResult unshare_probe(int flag, const char* ns_file, ProbeResult (*extra)(uid_t outer_euid)) {
    return run_isolated([=]() -> ProbeResult {
        uid_t outer_euid = geteuid();
        auto before = ns_inode(ns_file);
        if (!before)
            return no(before.error().str());
        if (unshare(flag) < 0)
            return no_errno(fmt::format("unshare({} namespace)", ns_file));
        auto after = ns_inode(ns_file);
        if (!after)
            return no(after.error().str());
        if (*after == *before)
            return no(fmt::format("unshare succeeded but /proc/self/ns/{} did not change", ns_file));
        ProbeResult r = extra ? extra(outer_euid) : yes("");
        if (r.present)
            r.detail = fmt::format("unshare works (ns inode {} -> {}){}{}", *before, *after,
                                   r.detail.empty() ? "" : "; ", r.detail);
        return r;
    });
}

ProbeResult user_extra(uid_t outer_euid) {
    // Map root inside to our euid outside: what restore does before anything else.
    if (auto st = write_text("/proc/self/uid_map", fmt::format("0 {} 1", outer_euid)); !st)
        return no(st.error().str());
    return yes("uid_map written");
}

// Not via unshare_probe: /proc/self/ns/pid_for_children gives ENOENT after
// unshare(CLONE_NEWPID) until the namespace has its init, so the first child
// checks its own /proc/self/ns/pid.
ProbeResult probe_pid_ns() {
    return run_isolated([]() -> ProbeResult {
        auto before = ns_inode("pid");
        if (!before)
            return no(before.error().str());
        if (unshare(CLONE_NEWPID) < 0)
            return no_errno("unshare(pid namespace)");
        ino_t outer = *before;
        int rc = in_grandchild([outer] {
            auto now = ns_inode("pid");
            if (getpid() != 1)
                return 1;
            return now && *now != outer ? 0 : 2;
        });
        if (rc == 1)
            return no("the first child in the new pid namespace is not pid 1");
        if (rc != 0)
            return no(fmt::format("the first child is not in a new pid namespace (rc {})", rc));
        return yes("unshare works; the first child is pid 1 in a new namespace");
    });
}

ProbeResult uts_extra(uid_t) {
    const char name[] = "criu-kfc";
    utsname u{};
    if (sethostname(name, sizeof name - 1) < 0 || uname(&u) < 0 || strcmp(u.nodename, name) != 0)
        return no_errno("sethostname in the new uts namespace");
    return yes("hostname set privately");
}

ProbeResult net_extra(uid_t) {
    if (if_nametoindex("lo") == 0)
        return no("new net namespace has no lo");
    return yes("");
}

ProbeResult time_extra(uid_t) {
    // Offsets can only be written before any task has entered the namespace.
    if (auto st = write_text("/proc/self/timens_offsets", "monotonic 86400 0"); !st)
        return no(st.error().str());
    int rc = in_grandchild([] {
        timespec ts{};
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec >= 86400 ? 0 : 1;
    });
    if (rc != 0)
        return no(fmt::format("a child of the new time namespace does not see the +1 day offset (rc {})", rc));
    return yes("monotonic offset of +1 day seen by a child");
}

ProbeResult probe_user_ns() { return unshare_probe(CLONE_NEWUSER, "user", user_extra); }
ProbeResult probe_net_ns() { return unshare_probe(CLONE_NEWNET, "net", net_extra); }
ProbeResult probe_mnt_ns() { return unshare_probe(CLONE_NEWNS, "mnt", nullptr); }
ProbeResult probe_ipc_ns() { return unshare_probe(CLONE_NEWIPC, "ipc", nullptr); }
ProbeResult probe_uts_ns() { return unshare_probe(CLONE_NEWUTS, "uts", uts_extra); }
ProbeResult probe_cgroup_ns() { return unshare_probe(CLONE_NEWCGROUP, "cgroup", nullptr); }
ProbeResult probe_time_ns() { return unshare_probe(abi::kCloneNewTime, "time_for_children", time_extra); }

// --- cgroup freezers ---

struct MountEntry {
    std::string root;
    std::string mountpoint;
    std::string fstype;
    std::string super_options;
};

std::vector<MountEntry> read_mounts() {
    std::vector<MountEntry> out;
    auto text = read_text("/proc/self/mountinfo");
    if (!text)
        return out;
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        // id parent maj:min root mountpoint options [optional fields...] - fstype source superopts
        std::istringstream ls(line);
        std::vector<std::string> f;
        for (std::string w; ls >> w;)
            f.push_back(w);
        size_t dash = 0;
        for (size_t i = 6; i < f.size(); i++)
            if (f[i] == "-") {
                dash = i;
                break;
            }
        if (dash == 0 || f.size() < dash + 4)
            continue;
        out.push_back({f[3], f[4], f[dash + 1], f[dash + 3]});
    }
    return out;
}

bool has_token(const std::string& list, std::string_view tok) {
    std::istringstream s(list);
    for (std::string t; std::getline(s, t, ',');)
        if (t == tok)
            return true;
    return false;
}

// Our cgroup path in the v2 hierarchy ("0::path") or in the v1 hierarchy that
// carries `controller` ("id:ctrl,ctrl:path"), from /proc/self/cgroup.
std::optional<std::string> own_cgroup(bool v2, std::string_view controller) {
    auto text = read_text("/proc/self/cgroup");
    if (!text)
        return std::nullopt;
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
        size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos)
            continue;
        std::string ctrls = line.substr(a + 1, b - a - 1);
        if ((v2 && line.compare(0, a, "0") == 0 && ctrls.empty()) || (!v2 && has_token(ctrls, controller)))
            return line.substr(b + 1);
    }
    return std::nullopt;
}

// Directory of our own cgroup in the hierarchy mounted at `m` (the mount may show
// only a subtree: strip its root from our path).
std::optional<std::string> cgroup_dir(const MountEntry& m, const std::string& path) {
    std::string rel = path;
    if (m.root != "/") {
        if (rel.compare(0, m.root.size(), m.root) != 0)
            return std::nullopt;
        rel = rel.substr(m.root.size());
    }
    if (rel == "/")
        rel.clear();
    return m.mountpoint + rel;
}

// A probe cgroup that is removed on every path. Removal is retried briefly: the
// exiting child leaves the cgroup slightly after it can be reaped on some kernels.
class ProbeCgroup {
public:
    explicit ProbeCgroup(std::string dir) : dir_(std::move(dir)) {}
    ~ProbeCgroup() {
        if (!created_)
            return;
        for (int i = 0; i < 100 && rmdir(dir_.c_str()) < 0 && errno == EBUSY; i++) {
            timespec ts{0, 1'000'000};
            nanosleep(&ts, nullptr);
        }
    }
    Status create() {
        if (mkdir(dir_.c_str(), 0700) < 0)
            return fail_errno("mkdir {}", dir_);
        created_ = true;
        return {};
    }
    std::string file(std::string_view name) const { return dir_ + "/" + std::string(name); }

private:
    std::string dir_;
    bool created_ = false;
};

std::string probe_cgroup_name() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return fmt::format("criu-kfc-{}-{}", getpid(), ts.tv_nsec);
}

// Polls a cgroup file until it contains `want` (rewriting `rewrite` to it between
// polls when given, the v1 FREEZING kludge), or times out.
bool wait_for(const std::string& path, std::string_view want, const char* rewrite_path = nullptr,
              std::string_view rewrite = {}) {
    for (int i = 0; i < kTimeoutMs; i++) {
        auto t = read_text(path);
        if (t && t->find(want) != std::string::npos)
            return true;
        if (rewrite_path && i % 10 == 9)
            (void)write_text(rewrite_path, rewrite);
        timespec ts{0, 1'000'000};
        nanosleep(&ts, nullptr);
    }
    return false;
}

ProbeResult probe_freezer_v2() {
    const MountEntry* mnt = nullptr;
    auto mounts = read_mounts();
    for (const auto& m : mounts)
        if (m.fstype == "cgroup2") {
            mnt = &m;
            break;
        }
    if (!mnt)
        return no("no cgroup2 mount in /proc/self/mountinfo");
    auto path = own_cgroup(true, "");
    auto base = path ? cgroup_dir(*mnt, *path) : std::nullopt;
    if (!base)
        return no("cannot place our v2 cgroup under " + mnt->mountpoint);
    ProbeCgroup cg(*base + "/" + probe_cgroup_name());
    if (auto st = cg.create(); !st)
        return no(st.error().str());
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    if (auto st = write_text(cg.file("cgroup.procs"), std::to_string(child->pid())); !st)
        return no(st.error().str());
    if (auto st = write_text(cg.file("cgroup.freeze"), "1"); !st)
        return no(st.error().str());
    if (!wait_for(cg.file("cgroup.events"), "frozen 1"))
        return no("cgroup.events never showed frozen 1");
    if (auto st = write_text(cg.file("cgroup.freeze"), "0"); !st)
        return no(st.error().str());
    if (!wait_for(cg.file("cgroup.events"), "frozen 0"))
        return no("cgroup.events never showed frozen 0 after thaw");
    return yes(fmt::format("froze and thawed a child in a cgroup under {}", mnt->mountpoint));
}

ProbeResult probe_freezer_v1() {
    const MountEntry* mnt = nullptr;
    auto mounts = read_mounts();
    for (const auto& m : mounts)
        if (m.fstype == "cgroup" && has_token(m.super_options, "freezer")) {
            mnt = &m;
            break;
        }
    if (!mnt)
        return no("no v1 freezer hierarchy mounted");
    auto path = own_cgroup(false, "freezer");
    auto base = path ? cgroup_dir(*mnt, *path) : std::nullopt;
    if (!base)
        return no("cannot place our freezer cgroup under " + mnt->mountpoint);
    ProbeCgroup cg(*base + "/" + probe_cgroup_name());
    if (auto st = cg.create(); !st)
        return no(st.error().str());
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    std::string state = cg.file("freezer.state");
    // Destroyed before `child`: a v1-frozen task does not die until thawed.
    struct Thaw {
        const std::string& f;
        ~Thaw() { (void)write_text(f, "THAWED"); }
    } thaw{state};
    if (auto st = write_text(cg.file("cgroup.procs"), std::to_string(child->pid())); !st)
        return no(st.error().str());
    if (auto st = write_text(state, "FROZEN"); !st)
        return no(st.error().str());
    // v1 can sit in FREEZING; CRIU re-writes FROZEN to push it on.
    if (!wait_for(state, "FROZEN\n", state.c_str(), "FROZEN"))
        return no("freezer.state never reached FROZEN");
    if (auto st = write_text(state, "THAWED"); !st)
        return no(st.error().str());
    if (!wait_for(state, "THAWED"))
        return no("freezer.state never returned to THAWED");
    return yes(fmt::format("froze and thawed a child in a cgroup under {}", mnt->mountpoint));
}

const Probe kProbes[] = {
    {"user_ns", Category::SomeStates, "dumping and restoring user namespaces (uid/gid maps)",
     "refuse trees with their own user namespace", probe_user_ns},
    {"pid_ns", Category::SomeStates, "restoring a tree in its own pid namespace (containers)",
     "restore into the current pid namespace only", probe_pid_ns},
    {"net_ns", Category::SomeStates, "restoring network namespaces (links, addresses, routes)",
     "refuse trees with their own network namespace", probe_net_ns},
    {"mnt_ns", Category::SomeStates, "restoring mount namespaces and mount trees",
     "refuse trees with their own mount namespace", probe_mnt_ns},
    {"ipc_ns", Category::SomeStates, "restoring IPC namespaces (SysV shm, sem, msg)",
     "refuse trees with their own IPC namespace", probe_ipc_ns},
    {"uts_ns", Category::SomeStates, "restoring UTS namespaces (hostname, domainname)",
     "refuse trees with their own UTS namespace", probe_uts_ns},
    {"cgroup_ns", Category::SomeStates, "restoring cgroup namespaces", "refuse trees with their own cgroup namespace",
     probe_cgroup_ns},
    {"time_ns", Category::SomeStates, "keeping CLOCK_MONOTONIC/BOOTTIME continuous across hosts (offsets)",
     "restored clocks jump to the new host's values", probe_time_ns},
    {"cgroup_freezer_v2", Category::Optional, "freezing a tree atomically via cgroup.freeze before seizing",
     "v1 freezer, else seize task by task with ptrace", probe_freezer_v2},
    {"cgroup_freezer_v1", Category::Optional, "freezing a tree in a v1 freezer cgroup before seizing",
     "v2 freezer, else seize task by task with ptrace", probe_freezer_v1},
};

}  // namespace

std::span<const Probe> ns_probes() { return kProbes; }

}  // namespace criu::kfc
