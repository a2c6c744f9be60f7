// The kernel feature table as one result object: dump, restore and migrate ask it
// ("has uffd_wp_async?", "XSAVE size?") and never probe themselves.
//
//   auto kf = criu::kfc::KernelFeatures::detect();      // cached per boot
//   if (!kf.required_ok()) ...kf.missing_required()...
//   if (kf.dirty_track_method() == DirtyTrackMethod::UffdWpAsync) ...
//
// Probing forks short-lived children and waits for them by pid; a caller that
// reaps every child from a SIGCHLD handler (waitpid(-1)) would steal those.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "kernel-feature-check/probe.h"
#include "kernel-feature-check/system_facts.h"

namespace criu::kfc {

inline constexpr const char* kDefaultCachePath = "/run/criu/kfc.cache";

struct FeatureRow {
    std::string name;
    Category category = Category::Optional;
    std::string enables;
    std::string fallback;
    bool present = false;
    std::string detail;
    bool derived = false;    // computed from other rows, not probed itself
    uint32_t probe_us = 0;   // time the probe took (0 for derived or cached rows)
};

struct KernelFacts {
    std::string kernel_release;  // uname -r
    std::string boot_id;         // /proc/sys/kernel/random/boot_id
    uint64_t page_size = 0;
    uint32_t xsave_size = 0;          // CPUID.(0xD,0).EBX for the features in XCR0
    uint32_t xsave_ptrace_size = 0;   // PTRACE_GETREGSET NT_X86_XSTATE length
    uint64_t xcr0 = 0;
    std::vector<VdsoArea> vdso_layout;  // [vvar], [vvar_vclock], [vdso] from the block start
};

enum class DirtyTrackMethod {
    UffdWpAsync,  // userfaultfd WP_ASYNC armed and read with PAGEMAP_SCAN (exact)
    SoftDirty,    // clear_refs + pagemap bit 55 (exact)
    None,         // no exact method: hash pages each round
};
std::string_view dirty_track_method_name(DirtyTrackMethod m);

struct DetectOptions {
    bool use_cache = true;
    std::string cache_path = kDefaultCachePath;
};

class KernelFeatures {
public:
    // Runs every probe now (well under a second), then derives the rest.
    static KernelFeatures run_all();
    // The cached result for this kernel and boot when there is a valid one, else
    // run_all() and a best-effort save of the cache.
    static KernelFeatures detect(const DetectOptions& opts = {});
    // Fails if the file is missing, not ours, made for another kernel release or
    // boot, or for a different probe table.
    static Expected<KernelFeatures> load_cache(const std::string& path);
    Status save_cache(const std::string& path) const;

    const std::vector<FeatureRow>& rows() const { return rows_; }
    // By name or CRIU alias (e.g. "timens" for "time_ns"); nullptr if unknown.
    const FeatureRow* find(std::string_view name) const;
    bool has(std::string_view name) const;
    bool required_ok() const;
    std::vector<const FeatureRow*> missing_required() const;
    DirtyTrackMethod dirty_track_method() const;
    const KernelFacts& facts() const { return facts_; }
    bool from_cache() const { return from_cache_; }
    uint64_t total_probe_us() const;

    std::string to_json() const;
    // all=false leaves out the optional rows.
    std::string to_table(bool all) const;

private:
    void derive();
    std::vector<FeatureRow> rows_;
    KernelFacts facts_;
    bool from_cache_ = false;
};

// Every probe, in table order.
std::span<const Probe> all_probes();
// Names of every row (probed and derived), in table order.
std::vector<std::string> feature_names();
// Canonical row name for a name or CRIU alias; empty if unknown.
std::string canonical_feature_name(std::string_view name);

}  // namespace criu::kfc
