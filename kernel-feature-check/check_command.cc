#include "kernel-feature-check/check_command.h"

#include <cstdio>
#include <sstream>

namespace criu::kfc {

namespace {

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string t; std::getline(in, t, ',');)
        if (!t.empty())
            out.push_back(t);
    return out;
}

int check_features(const std::string& list, const KernelFeatures& kf, std::string& out, std::string& err) {
    int rc = 0;
    for (const auto& name : split_commas(list)) {
        const FeatureRow* r = kf.find(name);
        if (!r) {
            err += fmt::format("Unknown feature {}\n", name);
            return 2;
        }
        if (r->present) {
            out += fmt::format("{} is supported\n", name);
        } else {
            out += fmt::format("{} is not supported\n", name);
            err += fmt::format("{}: {}\n", r->name, r->detail);
            rc = 1;
        }
    }
    return rc;
}

}  // namespace

int run_check_command(const CheckArgs& args, const KernelFeatures& kf, std::string& out, std::string& err) {
    if (args.feature == "list") {
        std::string line;
        for (const auto& n : feature_names())
            line += (line.empty() ? "" : " ") + n;
        out += line + "\n";
        return 0;
    }
    if (!args.feature.empty())
        return check_features(args.feature, kf, out, err);
    if (args.json) {
        out += kf.to_json();
        return kf.required_ok() ? 0 : 1;
    }
    if (args.all)
        out += kf.to_table(true) + "\n";
    auto missing = kf.missing_required();
    if (!missing.empty()) {
        out += "Does not look good.\n";
        for (const FeatureRow* r : missing)
            out += fmt::format("  missing required feature {}: {}\n    needed for: {}\n", r->name, r->detail,
                               r->enables);
        return 1;
    }
    out += "Looks good.\n";
    if (args.all) {
        std::string absent;
        for (const auto& r : kf.rows())
            if (!r.present)
                absent += (absent.empty() ? "" : ", ") + r.name;
        if (!absent.empty())
            out += fmt::format(
                "Not required but missing: {}.\nDepending on the process tree, dump or restore may refuse it or "
                "use the fallback shown above.\n",
                absent);
    }
    return 0;
}

int run_check_command(const CheckArgs& args) {
    std::string out, err;
    int rc;
    if (args.feature == "list") {
        rc = run_check_command(args, KernelFeatures{}, out, err);
    } else {
        KernelFeatures kf = KernelFeatures::detect({.use_cache = args.use_cache});
        rc = run_check_command(args, kf, out, err);
    }
    std::fputs(out.c_str(), stdout);
    std::fputs(err.c_str(), stderr);
    std::fflush(stdout);
    return rc;
}

}  // namespace criu::kfc
