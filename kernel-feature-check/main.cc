// kernel-feature-check: what the running kernel offers for checkpoint/restore.
//   kernel-feature-check                 table of every row (exit 1 if a required one is missing)
//   kernel-feature-check --json          the same as JSON
//   kernel-feature-check --feature NAME  exit 0 present, 1 absent, 2 unknown name
//   kernel-feature-check --feature list  every feature name
#include <CLI/CLI.hpp>

#include <cstdio>

#include "kernel-feature-check/features.h"

using namespace criu::kfc;

int main(int argc, char** argv) {
    CLI::App app{"Probe the running kernel for the features checkpoint/restore needs"};
    bool json = false, no_cache = false, required_only = false;
    std::string feature, cache_path = kDefaultCachePath;
    app.add_flag("--json", json, "Print the table as JSON");
    app.add_option("--feature", feature, "Answer for one feature by exit code, or \"list\"");
    app.add_flag("--no-cache", no_cache, "Probe now; do not read or write the cache");
    app.add_option("--cache", cache_path, "Cache file (keyed by kernel release and boot id)");
    app.add_flag("--required-only", required_only, "Table: leave out the optional rows");
    CLI11_PARSE(app, argc, argv);

    if (feature == "list") {
        for (const auto& n : feature_names())
            std::printf("%s\n", n.c_str());
        return 0;
    }
    if (!feature.empty() && canonical_feature_name(feature).empty()) {
        std::fprintf(stderr, "Unknown feature %s (see --feature list)\n", feature.c_str());
        return 2;
    }

    KernelFeatures kf = KernelFeatures::detect({.use_cache = !no_cache, .cache_path = cache_path});

    if (!feature.empty()) {
        const FeatureRow* r = kf.find(feature);
        std::printf("%s: %s (%s)\n", r->name.c_str(), r->present ? "present" : "absent", r->detail.c_str());
        return r->present ? 0 : 1;
    }
    if (json)
        std::fputs(kf.to_json().c_str(), stdout);
    else
        std::fputs(kf.to_table(!required_only).c_str(), stdout);
    return kf.required_ok() ? 0 : 1;
}
