#include "migrate/cache/cache_stats.h"

#include <fmt/format.h>

namespace criu {
namespace {

double ratio(uint64_t num, uint64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / den; }

double mib(uint64_t b) { return b / (1024.0 * 1024.0); }

}  // namespace

std::string json_quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20)
                out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
            else
                out += c;
        }
    }
    return out + "\"";
}

std::string_view mode_name(CacheMode m) {
    switch (m) {
    case CacheMode::writeback: return "writeback";
    case CacheMode::writethrough: return "writethrough";
    case CacheMode::standalone: return "standalone";
    }
    return "?";
}

std::string_view policy_name(EvictionPolicy p) { return p == EvictionPolicy::fifo ? "fifo" : "lru"; }

double CacheStats::hit_ratio() const {
    return ratio(hits(), counters.reads + counters.writes - counters.zero_chunks);
}

double CacheStats::read_hit_ratio() const { return ratio(counters.read_hits, counters.reads); }

double CacheStats::compression_ratio() const { return ratio(raw_bytes, live_bytes); }

std::string CacheStats::to_json() const {
    std::string s = "{";
    s += fmt::format("\"mode\": \"{}\", \"policy\": \"{}\", \"cache_size\": {}, \"live_limit\": {}, ",
                     mode_name(mode), policy_name(policy), cache_size, live_limit);
    s += fmt::format("\"chunks\": {}, \"dirty_chunks\": {}, \"clean_chunks\": {}, \"pinned_chunks\": {}, "
                     "\"corrupt_chunks_indexed\": {}, ",
                     chunks, dirty_chunks, clean_chunks, pinned_chunks, corrupt_chunks);
    s += fmt::format("\"dirty_bytes\": {}, \"pinned_bytes\": {}, \"raw_bytes\": {}, \"live_bytes\": {}, "
                     "\"disk_bytes\": {}, \"segments\": {}, \"snapshots\": {}, ",
                     dirty_bytes, pinned_bytes, raw_bytes, live_bytes, disk_bytes, segments, snapshots);
    s += fmt::format("\"hits\": {}, \"hit_ratio\": {:.4f}, \"read_hit_ratio\": {:.4f}, "
                     "\"compression_ratio\": {:.3f}, \"dedup_bytes\": {}, ",
                     hits(), hit_ratio(), read_hit_ratio(), compression_ratio(), dedup_bytes());
    s += "\"last_writeback_error\": " + json_quote(last_writeback_error);
    for (const auto& [name, field] : kCounterFields)
        s += fmt::format(", \"{}\": {}", name, counters.*field);
    return s + "}";
}

std::string CacheStats::to_line() const {
    const CacheCounters& c = counters;
    return fmt::format(
        "{:.1f}/{:.1f} MiB disk {:.1f} MiB chunks {} dirty {} ({:.1f} MiB) clean {} pinned {} "
        "reads {} read_hits {} read_misses {} writes {} write_hits {} hit_ratio {:.1f}% "
        "evictions {} dedup {:.1f} MiB (local {:.1f} remote {:.1f} zero {:.1f}) writebacks {} "
        "compression {:.2f} corrupt {} mode {} policy {}",
        mib(live_bytes), mib(live_limit), mib(disk_bytes), chunks, dirty_chunks, mib(dirty_bytes),
        clean_chunks, pinned_chunks, c.reads, c.read_hits, c.read_misses, c.writes, c.write_hits,
        hit_ratio() * 100, c.evictions, mib(dedup_bytes()), mib(c.dedup_local_bytes),
        mib(c.dedup_remote_bytes), mib(c.zero_bytes), c.writebacks, compression_ratio(),
        c.corrupt_chunks, mode_name(mode), policy_name(policy));
}

}  // namespace criu
