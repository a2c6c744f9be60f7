// What the probes answer on this machine kind (the CI machine is the same kind:
// Linux 6.18 without CONFIG_MEM_SOFT_DIRTY, with uffd-wp async and PAGEMAP_SCAN,
// running the tests as root), and that probing leaves nothing behind.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

#include "kernel-feature-check/features.h"
#include "test/unit/kfc/json_check.h"

using namespace criu::kfc;

namespace {

const KernelFeatures& probed() {
    static const KernelFeatures kf = KernelFeatures::run_all();
    return kf;
}

int count_fds() {
    int n = 0;
    DIR* d = opendir("/proc/self/fd");
    while (dirent* e = readdir(d))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

// Mappings outside [heap]/[stack]; with named_only, only those with a name (files,
// shmem, memfd), which no allocator creates on its own.
std::set<std::string> maps_lines(bool named_only) {
    std::set<std::string> out;
    std::ifstream in("/proc/self/maps");
    for (std::string l; std::getline(in, l);) {
        if (l.find("[heap]") != std::string::npos || l.find("[stack]") != std::string::npos)
            continue;
        if (named_only && l.back() == ' ')
            continue;
        out.insert(l);
    }
    return out;
}

}  // namespace

TEST_CASE("dirty tracking answers match this kernel: no soft-dirty, uffd-wp async + PAGEMAP_SCAN") {
    const auto& kf = probed();
    INFO(kf.to_table(true));
    CHECK_FALSE(kf.has("soft_dirty"));
    CHECK(kf.has("uffd_wp_async"));
    CHECK(kf.has("pagemap_scan"));
    CHECK(kf.has("mem_dirty_track"));
    CHECK(kf.dirty_track_method() == DirtyTrackMethod::UffdWpAsync);
    CHECK(kf.find("mem_dirty_track")->detail.find("uffd-wp async") != std::string::npos);
    CHECK(kf.find("soft_dirty")->detail.find("bit 55") != std::string::npos);
}

TEST_CASE("every required feature works here") {
    const auto& kf = probed();
    INFO(kf.to_table(true));
    CHECK(kf.required_ok());
    CHECK(kf.missing_required().empty());
}

TEST_CASE("the other features this kernel has are reported present") {
    const auto& kf = probed();
    for (const char* n : {"uffd", "uffd_wp", "uffd_wp_unpopulated", "uffd_minor", "tcp_repair", "tcp_repair_window",
                          "sock_diag_inet", "sock_diag_packet", "sock_diag_netlink", "kcmp_epoll_tfd",
                          "ptrace_rseq_config", "ptrace_seccomp_filter", "ns_last_pid", "memfd", "user_ns", "pid_ns",
                          "net_ns", "mnt_ns", "ipc_ns", "uts_ns", "cgroup_ns", "time_ns", "cgroup_freezer_v2",
                          "io_uring"}) {
        INFO(n << ": " << kf.find(n)->detail);
        CHECK(kf.has(n));
    }
    CHECK(kf.has("timens"));  // CRIU alias
    CHECK_FALSE(kf.has("no_such_feature"));
}

TEST_CASE("numeric facts describe this kernel and CPU") {
    const auto& f = probed().facts();
    CHECK(f.page_size == uint64_t(sysconf(_SC_PAGESIZE)));
    CHECK(!f.kernel_release.empty());
    CHECK(f.boot_id.size() == 36);
    CHECK((f.xcr0 & 0x3) == 0x3);      // x87 and SSE are always enabled with XSAVE
    CHECK(f.xsave_size >= 576);        // legacy area + header
    CHECK(f.xsave_ptrace_size >= 576);
    CHECK(f.xsave_ptrace_size <= f.xsave_size);
    // 6.13+: [vvar] 4 pages, [vvar_vclock] 2 pages, [vdso] 2 pages, contiguous.
    REQUIRE(f.vdso_layout.size() == 3);
    CHECK(f.vdso_layout[0].name == "[vvar]");
    CHECK(f.vdso_layout[1].name == "[vvar_vclock]");
    CHECK(f.vdso_layout[2].name == "[vdso]");
    uint64_t off = 0;
    for (const auto& a : f.vdso_layout) {
        CHECK(a.offset == off);
        CHECK(a.size % f.page_size == 0);
        off += a.size;
    }
}

TEST_CASE("the JSON output is strict JSON and carries the required rows") {
    const auto& kf = probed();
    std::string j = kf.to_json();
    auto r = criu::kfc::test::check_json(j);
    INFO(r.error << " at " << r.offset << ": " << j.substr(r.offset, 60));
    CHECK(r.ok);
    CHECK(j.find("\"soft_dirty\": {\"category\": \"optional\", \"present\": false") != std::string::npos);
    CHECK(j.find("\"uffd_wp_async\": {\"category\": \"some_states\", \"present\": true") != std::string::npos);
    CHECK(j.find("\"pagemap_scan\": {\"category\": \"some_states\", \"present\": true") != std::string::npos);
    CHECK(j.find("\"required_ok\": true") != std::string::npos);
}

TEST_CASE("the table shows every row with all, and no optional row without") {
    const auto& kf = probed();
    std::string all = kf.to_table(true), some = kf.to_table(false);
    for (const auto& row : kf.rows()) {
        INFO(row.name);
        CHECK(all.find(row.name + " ") != std::string::npos);
        CHECK((some.find("\n" + row.name + " ") != std::string::npos) == (row.category != Category::Optional));
    }
    CHECK(all.find("fallback:") != std::string::npos);
}

// How long probing takes is a benchmark figure (`criu check` prints it), not something a test
// on a shared machine can assert.
TEST_CASE("probing leaves no children, fds, mappings or cgroups behind") {
    (void)KernelFeatures::run_all();  // warm up allocator arenas and lazily loaded modules
    int fds = count_fds();
    auto maps = maps_lines(false);
    auto named = maps_lines(true);
    KernelFeatures kf = KernelFeatures::run_all();
    CHECK(kf.total_probe_us() > 0);
    CHECK(count_fds() == fds);
    CHECK(maps_lines(true) == named);
#ifndef __SANITIZE_ADDRESS__
    // ASan's allocator maps shadow and arenas at will; elsewhere all must match.
    CHECK(maps_lines(false) == maps);
#endif
    int st;
    errno = 0;
    CHECK(waitpid(-1, &st, WNOHANG | __WALL) == -1);
    CHECK(errno == ECHILD);
    for (const char* dir : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup/freezer"}) {
        DIR* d = opendir(dir);
        if (!d)
            continue;
        std::string mine = "criu-kfc-" + std::to_string(getpid()) + "-";
        while (dirent* e = readdir(d))
            CHECK(std::string(e->d_name).rfind(mine, 0) == std::string::npos);
        closedir(d);
    }
}
