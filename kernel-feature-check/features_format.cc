// Rendering of KernelFeatures: JSON for tools, a table for people.
#include <algorithm>

#include "kernel-feature-check/features.h"

namespace criu::kfc {

namespace {

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out += char(c);
        }
    }
    return out + "\"";
}

// Short labels for the table column; the JSON carries category_key().
std::string_view category_label(Category c) {
    switch (c) {
    case Category::Required:
        return "required";
    case Category::SomeStates:
        return "some states";
    case Category::Optional:
        return "optional";
    }
    return "?";
}

}  // namespace

std::string KernelFeatures::to_json() const {
    const KernelFacts& f = facts_;
    std::string out = "{\n";
    out += fmt::format("  \"kernel\": {{\"release\": {}, \"boot_id\": {}}},\n", json_string(f.kernel_release),
                       json_string(f.boot_id));
    out += fmt::format("  \"from_cache\": {},\n", from_cache_ ? "true" : "false");
    out += fmt::format("  \"probe_time_us\": {},\n", total_probe_us());
    out += fmt::format("  \"required_ok\": {},\n", required_ok() ? "true" : "false");
    out += fmt::format("  \"mem_dirty_track_method\": {},\n", json_string(dirty_track_method_name(dirty_track_method())));
    out += "  \"facts\": {\n";
    out += fmt::format("    \"page_size\": {},\n", f.page_size);
    out += fmt::format("    \"xsave_size\": {},\n", f.xsave_size);
    out += fmt::format("    \"xsave_ptrace_size\": {},\n", f.xsave_ptrace_size);
    out += fmt::format("    \"xcr0\": {},\n", f.xcr0);
    out += fmt::format("    \"xcr0_hex\": {},\n", json_string(fmt::format("{:#x}", f.xcr0)));
    out += fmt::format("    \"xcr0_features\": {},\n", json_string(xfeatures_text(f.xcr0)));
    out += "    \"vdso_layout\": [";
    for (size_t i = 0; i < f.vdso_layout.size(); i++) {
        const auto& a = f.vdso_layout[i];
        out += fmt::format("{}{{\"name\": {}, \"offset\": {}, \"size\": {}}}", i ? ", " : "", json_string(a.name),
                           a.offset, a.size);
    }
    out += "]\n  },\n";
    out += "  \"features\": {\n";
    for (size_t i = 0; i < rows_.size(); i++) {
        const auto& r = rows_[i];
        out += fmt::format(
            "    {}: {{\"category\": {}, \"present\": {}, \"detail\": {}, \"enables\": {}, \"fallback\": {}, "
            "\"derived\": {}, \"probe_us\": {}}}{}\n",
            json_string(r.name), json_string(category_key(r.category)), r.present ? "true" : "false",
            json_string(r.detail), json_string(r.enables), json_string(r.fallback), r.derived ? "true" : "false",
            r.probe_us, i + 1 < rows_.size() ? "," : "");
    }
    out += "  }\n}\n";
    return out;
}

std::string KernelFeatures::to_table(bool all) const {
    size_t name_w = 7;
    for (const auto& r : rows_)
        name_w = std::max(name_w, r.name.size());
    std::string out;
    if (from_cache_)
        out += fmt::format("Kernel {} (cached result for boot {})\n\n", facts_.kernel_release, facts_.boot_id);
    else
        out += fmt::format("Kernel {}, probed in {:.1f} ms\n\n", facts_.kernel_release, total_probe_us() / 1000.0);
    out += fmt::format("{:<{}}  {:<11}  {:<7}  {}\n", "FEATURE", name_w, "CATEGORY", "PRESENT", "DETAIL");
    std::string indent(name_w + 2 + 11 + 2 + 7 + 2, ' ');
    for (const auto& r : rows_) {
        if (!all && r.category == Category::Optional)
            continue;
        out += fmt::format("{:<{}}  {:<11}  {:<7}  {}\n", r.name, name_w, category_label(r.category),
                           r.present ? "yes" : "NO", r.detail);
        out += fmt::format("{}enables:  {}\n", indent, r.enables);
        out += fmt::format("{}fallback: {}\n", indent, r.fallback);
    }
    out += "\nFacts:\n";
    out += fmt::format("  page size          {}\n", facts_.page_size);
    out += fmt::format("  XCR0               {:#x} ({})\n", facts_.xcr0, xfeatures_text(facts_.xcr0));
    out += fmt::format("  XSAVE size         {} B (CPUID), {} B (ptrace)\n", facts_.xsave_size,
                       facts_.xsave_ptrace_size);
    out += fmt::format("  vDSO block         {}\n", vdso_layout_text(facts_.vdso_layout));
    out += fmt::format("  dirty tracking     {}\n", dirty_track_method_name(dirty_track_method()));
    auto missing = missing_required();
    if (missing.empty())
        out += "\nAll required features are present.\n";
    else
        out += fmt::format("\n{} required feature(s) missing.\n", missing.size());
    return out;
}

}  // namespace criu::kfc
