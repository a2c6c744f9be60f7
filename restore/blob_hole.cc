#include "restore/blob_hole.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "restore/validate.h"

namespace criu {
namespace {

// Lowest address considered: stay well above mmap_min_addr and the classic non-PIE text.
constexpr uint64_t kLowest = 1ull << 32;
constexpr uint64_t kPage = 4096;

}  // namespace

Expected<std::vector<std::pair<uint64_t, uint64_t>>> parse_maps_ranges(const std::string& maps_text) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    std::string_view text(maps_text);
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (line.empty())
            continue;
        size_t dash = line.find('-'), sp = line.find(' ');
        uint64_t s = 0, e = 0;
        if (dash == std::string_view::npos || sp == std::string_view::npos || sp < dash ||
            std::from_chars(line.data(), line.data() + dash, s, 16).ec != std::errc() ||
            std::from_chars(line.data() + dash + 1, line.data() + sp, e, 16).ec != std::errc())
            return failf(EINVAL, "unparsable maps line \"{}\"", line);
        out.emplace_back(s, e);
    }
    return out;
}

Expected<uint64_t> find_blob_hole(const images::MmInfo& target,
                                  const std::vector<std::pair<uint64_t, uint64_t>>& own, uint64_t size) {
    std::vector<std::pair<uint64_t, uint64_t>> taken(own.begin(), own.end());
    for (const auto& v : target.vmas())
        if (v.kind() != images::VMA_VSYSCALL)
            taken.emplace_back(v.start(), v.end());
    std::sort(taken.begin(), taken.end());
    uint64_t best_start = 0, best_len = 0;
    uint64_t cur = kLowest;
    auto consider = [&](uint64_t gap_start, uint64_t gap_end) {
        if (gap_end > gap_start && gap_end - gap_start > best_len) {
            best_start = gap_start;
            best_len = gap_end - gap_start;
        }
    };
    for (const auto& [s, e] : taken) {
        if (s >= kUserAddressEnd)
            break;
        if (s > cur)
            consider(cur, s);
        cur = std::max(cur, e);
    }
    consider(cur, kUserAddressEnd);
    if (best_len < size)
        return failf(ENOMEM, "no address range of {} bytes is free both in criu and in the dumped layout",
                     size);
    uint64_t base = (best_start + (best_len - size) / 2) / kPage * kPage;
    return base;
}

}  // namespace criu
