#include "kernel-feature-check/features.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "kernel-feature-check/probe_util.h"

namespace criu::kfc {

namespace {

struct Derived {
    const char* name;
    Category category;
    const char* enables;
    const char* fallback;
    ProbeResult (*derive)(const KernelFeatures&);
};

ProbeResult derive_dirty_track(const KernelFeatures& kf) {
    switch (kf.dirty_track_method()) {
    case DirtyTrackMethod::UffdWpAsync:
        return yes("method: uffd-wp async + PAGEMAP_SCAN");
    case DirtyTrackMethod::SoftDirty:
        return yes("method: soft-dirty (clear_refs + pagemap bit 55)");
    case DirtyTrackMethod::None:
        break;
    }
    return no("no exact method: neither uffd_wp_async + pagemap_scan nor soft_dirty");
}

ProbeResult derive_freezer(const KernelFeatures& kf) {
    if (kf.has("cgroup_freezer_v2"))
        return yes("v2 (cgroup.freeze)");
    if (kf.has("cgroup_freezer_v1"))
        return yes("v1 (freezer.state)");
    return no("neither v2 nor v1 freezer works here");
}

const Derived kDerived[] = {
    {"mem_dirty_track", Category::SomeStates, "incremental dumps (pre-dump) and iterative pre-copy migration",
     "hash every page each round (reads all memory every round)", derive_dirty_track},
    {"cgroup_freezer", Category::Optional, "freezing a tree that has its own cgroup in one step",
     "seize task by task with ptrace (new forks may race)", derive_freezer},
};

// CRIU's `criu check --feature` names for rows that mean the same thing here.
struct Alias {
    const char* criu_name;
    const char* ours;
};
const Alias kAliases[] = {
    {"seccomp_filters", "ptrace_seccomp_filter"},
    {"kcmp_epoll", "kcmp_epoll_tfd"},
    {"timens", "time_ns"},
    {"cgroupns", "cgroup_ns"},
    {"userns", "user_ns"},
    {"get_rseq_conf", "ptrace_rseq_config"},
    {"uffd-wp", "uffd_wp"},
};

uint32_t elapsed_us(const timespec& a, const timespec& b) {
    return uint32_t((b.tv_sec - a.tv_sec) * 1'000'000 + (b.tv_nsec - a.tv_nsec) / 1000);
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

KernelFacts gather_facts() {
    KernelFacts f;
    utsname u{};
    if (uname(&u) == 0)
        f.kernel_release = u.release;
    if (auto id = read_text("/proc/sys/kernel/random/boot_id"))
        f.boot_id = trim(*id);
    f.page_size = page_size();
    if (auto x = read_xsave_info()) {
        f.xsave_size = x->size;
        f.xcr0 = x->xcr0;
    }
    if (auto s = ptrace_xstate_size())
        f.xsave_ptrace_size = *s;
    if (auto v = read_vdso_layout())
        f.vdso_layout = std::move(*v);
    return f;
}

// Identifies the probe table, so a cache written by another build is not trusted.
std::string table_signature() {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (const auto& n : feature_names()) {
        for (unsigned char c : n + ";") {
            h ^= c;
            h *= 1099511628211ull;
        }
    }
    return fmt::format("{:016x}", h);
}

std::string escape_line(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string unescape_line(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            out += s[i + 1] == 'n' ? '\n' : s[i + 1];
            i++;
        } else {
            out += s[i];
        }
    }
    return out;
}

constexpr std::string_view kCacheMagic = "criu-kfc-cache 1";

}  // namespace

std::string_view category_name(Category c) {
    switch (c) {
    case Category::Required:
        return "required";
    case Category::SomeStates:
        return "needed for some states";
    case Category::Optional:
        return "optional";
    }
    return "?";
}

std::string_view category_key(Category c) {
    switch (c) {
    case Category::Required:
        return "required";
    case Category::SomeStates:
        return "some_states";
    case Category::Optional:
        return "optional";
    }
    return "?";
}

std::string_view dirty_track_method_name(DirtyTrackMethod m) {
    switch (m) {
    case DirtyTrackMethod::UffdWpAsync:
        return "uffd_wp_async+pagemap_scan";
    case DirtyTrackMethod::SoftDirty:
        return "soft_dirty";
    case DirtyTrackMethod::None:
        return "none";
    }
    return "?";
}

std::span<const Probe> all_probes() {
    static const std::vector<Probe> table = [] {
        std::vector<Probe> t;
        for (auto part : {process_probes(), memory_probes(), net_probes(), ns_probes(), system_probes()})
            t.insert(t.end(), part.begin(), part.end());
        return t;
    }();
    return table;
}

std::vector<std::string> feature_names() {
    std::vector<std::string> out;
    for (const auto& p : all_probes())
        out.emplace_back(p.name);
    for (const auto& d : kDerived)
        out.emplace_back(d.name);
    return out;
}

std::string canonical_feature_name(std::string_view name) {
    for (const auto& a : kAliases)
        if (name == a.criu_name)
            return a.ours;
    for (const auto& n : feature_names())
        if (n == name)
            return n;
    return {};
}

KernelFeatures KernelFeatures::run_all() {
    KernelFeatures kf;
    for (const auto& p : all_probes()) {
        timespec a{}, b{};
        clock_gettime(CLOCK_MONOTONIC, &a);
        ProbeResult r = p.run();
        clock_gettime(CLOCK_MONOTONIC, &b);
        kf.rows_.push_back({p.name, p.category, p.enables, p.fallback, r.present, std::move(r.detail), false,
                            elapsed_us(a, b)});
    }
    kf.facts_ = gather_facts();
    kf.derive();
    return kf;
}

void KernelFeatures::derive() {
    rows_.erase(std::remove_if(rows_.begin(), rows_.end(), [](const FeatureRow& r) { return r.derived; }),
                rows_.end());
    // Each derived row sees the probed rows and the derived rows before it.
    for (const auto& d : kDerived) {
        ProbeResult r = d.derive(*this);
        rows_.push_back({d.name, d.category, d.enables, d.fallback, r.present, std::move(r.detail), true, 0});
    }
}

KernelFeatures KernelFeatures::detect(const DetectOptions& opts) {
    if (opts.use_cache) {
        if (auto cached = load_cache(opts.cache_path))
            return std::move(*cached);
    }
    KernelFeatures kf = run_all();
    if (opts.use_cache)
        (void)kf.save_cache(opts.cache_path);  // best effort: not root, read-only /run
    return kf;
}

const FeatureRow* KernelFeatures::find(std::string_view name) const {
    std::string canon = canonical_feature_name(name);
    for (const auto& r : rows_)
        if (r.name == canon)
            return &r;
    return nullptr;
}

bool KernelFeatures::has(std::string_view name) const {
    const FeatureRow* r = find(name);
    return r && r->present;
}

bool KernelFeatures::required_ok() const { return missing_required().empty(); }

std::vector<const FeatureRow*> KernelFeatures::missing_required() const {
    std::vector<const FeatureRow*> out;
    for (const auto& r : rows_)
        if (r.category == Category::Required && !r.present)
            out.push_back(&r);
    return out;
}

DirtyTrackMethod KernelFeatures::dirty_track_method() const {
    if (has("uffd_wp_async") && has("pagemap_scan"))
        return DirtyTrackMethod::UffdWpAsync;
    if (has("soft_dirty"))
        return DirtyTrackMethod::SoftDirty;
    return DirtyTrackMethod::None;
}

uint64_t KernelFeatures::total_probe_us() const {
    uint64_t t = 0;
    for (const auto& r : rows_)
        t += r.probe_us;
    return t;
}

// Cache format, one record per line:
//   criu-kfc-cache 1 / release R / boot_id B / table SIG / fact NAME VALUE /
//   vdso NAME OFFSET SIZE / row NAME 0|1 DETAIL (backslash-escaped)
// Category, enables and fallback come from the table, never from the file.
Status KernelFeatures::save_cache(const std::string& path) const {
    std::string out = fmt::format("{}\nrelease {}\nboot_id {}\ntable {}\n", kCacheMagic, facts_.kernel_release,
                                  facts_.boot_id, table_signature());
    out += fmt::format("fact page_size {}\nfact xsave_size {}\nfact xsave_ptrace_size {}\nfact xcr0 {}\n",
                       facts_.page_size, facts_.xsave_size, facts_.xsave_ptrace_size, facts_.xcr0);
    for (const auto& v : facts_.vdso_layout)
        out += fmt::format("vdso {} {} {}\n", v.name, v.offset, v.size);
    for (const auto& r : rows_)
        if (!r.derived)
            out += fmt::format("row {} {} {}\n", r.name, r.present ? 1 : 0, escape_line(r.detail));

    size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        std::string dir = path.substr(0, slash);
        if (mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST)
            return fail_errno("mkdir {}", dir);
    }
    std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd)
        return fail_errno("create {}", tmp);
    if (write(fd.get(), out.data(), out.size()) != ssize_t(out.size()) || fsync(fd.get()) < 0) {
        int e = errno;
        unlink(tmp.c_str());
        return fail(e, "write " + tmp);
    }
    // rename() is atomic: a concurrent reader sees the old file or the new one.
    if (rename(tmp.c_str(), path.c_str()) < 0) {
        int e = errno;
        unlink(tmp.c_str());
        return fail(e, "rename to " + path);
    }
    return {};
}

Expected<KernelFeatures> KernelFeatures::load_cache(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd)
        return fail_errno("open {}", path);
    struct stat st {};
    if (fstat(fd.get(), &st) < 0)
        return fail_errno("stat {}", path);
    // Whoever can write the cache decides what dump and restore believe.
    if (st.st_uid != geteuid() || (st.st_mode & 022))
        return failf(EPERM, "{} is not owned by us or is writable by others", path);
    if (st.st_size > 256 * 1024)
        return failf(EFBIG, "{} is too large for a feature cache", path);
    std::string text = TRY(read_text("/proc/self/fd/" + std::to_string(fd.get())));

    utsname u{};
    uname(&u);
    std::string boot_id = trim(read_text("/proc/sys/kernel/random/boot_id").value_or(""));
    KernelFeatures kf;
    kf.from_cache_ = true;
    std::istringstream in(text);
    std::string line;
    if (!std::getline(in, line) || line != kCacheMagic)
        return failf(EINVAL, "{}: not a feature cache", path);
    bool release_ok = false, boot_ok = false, table_ok = false;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string kind;
        ls >> kind;
        if (kind == "release") {
            ls >> kf.facts_.kernel_release;
            release_ok = kf.facts_.kernel_release == u.release;
        } else if (kind == "boot_id") {
            ls >> kf.facts_.boot_id;
            boot_ok = !boot_id.empty() && kf.facts_.boot_id == boot_id;
        } else if (kind == "table") {
            std::string sig;
            ls >> sig;
            table_ok = sig == table_signature();
        } else if (kind == "fact") {
            std::string name;
            uint64_t v = 0;
            ls >> name >> v;
            if (name == "page_size")
                kf.facts_.page_size = v;
            else if (name == "xsave_size")
                kf.facts_.xsave_size = uint32_t(v);
            else if (name == "xsave_ptrace_size")
                kf.facts_.xsave_ptrace_size = uint32_t(v);
            else if (name == "xcr0")
                kf.facts_.xcr0 = v;
        } else if (kind == "vdso") {
            VdsoArea a;
            ls >> a.name >> a.offset >> a.size;
            kf.facts_.vdso_layout.push_back(a);
        } else if (kind == "row") {
            std::string name;
            int present = 0;
            ls >> name >> present;
            std::string detail;
            std::getline(ls >> std::ws, detail);
            auto probe = std::find_if(all_probes().begin(), all_probes().end(),
                                      [&](const Probe& p) { return name == p.name; });
            if (probe == all_probes().end())
                return failf(EINVAL, "{}: unknown row {}", path, name);
            if (kf.find(name))
                return failf(EINVAL, "{}: row {} appears twice", path, name);
            kf.rows_.push_back({probe->name, probe->category, probe->enables, probe->fallback, present == 1,
                                unescape_line(detail), false, 0});
        } else if (!kind.empty()) {
            return failf(EINVAL, "{}: unknown record \"{}\"", path, kind);
        }
    }
    if (!release_ok || !boot_ok)
        return failf(ESTALE, "{} was written for another kernel or boot", path);
    if (!table_ok || kf.rows_.size() != all_probes().size())
        return failf(ESTALE, "{} was written for a different probe table", path);
    kf.derive();
    return kf;
}

}  // namespace criu::kfc
