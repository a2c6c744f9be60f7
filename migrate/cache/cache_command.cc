#include "migrate/cache/cache_command.h"

#include <sys/stat.h>

#include <cstdio>

#include "migrate/cache/chunk_cache.h"

namespace criu {
namespace {

constexpr int kOk = 0, kProblems = 1, kUsage = 2;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string json_list(const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); i++)
        s += (i ? ", " : "") + json_quote(v[i]);
    return s + "]";
}

std::string recovery_json(const RecoveryReport& r) {
    return fmt::format("{{\"clean_shutdown\": {}, \"rebuilt_from_segments\": {}, \"journal_records\": {}, "
                       "\"journal_ignored_bytes\": {}, \"unconfirmed_checked\": {}, \"dropped\": {}, "
                       "\"stale_files_removed\": {}, \"warnings\": {}}}",
                       r.clean_shutdown, r.rebuilt_from_segments, r.journal_records, r.journal_ignored_bytes,
                       r.unconfirmed_checked, r.dropped, r.stale_files_removed, json_list(r.warnings));
}

int cmd_stat(const std::string& dir, bool json, std::string& out, std::string& err) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
        err += fmt::format("criu cache stat: no cache at {}: {}\n", dir, std::strerror(errno));
        return kProblems;
    }
    ChunkCacheOptions o;
    o.read_only = true;
    auto c = ChunkCache::open(dir, o);
    if (!c) {
        err += "criu cache stat: " + c.error().str() + "\n";
        return kProblems;
    }
    CacheStats s = (*c)->stats();
    out += (json ? s.to_json() : s.to_line()) + "\n";
    return kOk;
}

int cmd_verify(const std::string& dir, bool json, std::string& out, std::string& err) {
    auto c = ChunkCache::open(dir, {});
    if (!c) {
        err += "criu cache verify: " + c.error().str() + "\n";
        return kProblems;
    }
    VerifyReport v = (*c)->verify();
    const RecoveryReport& r = (*c)->recovery();
    if (json) {
        out += fmt::format("{{\"ok\": {}, \"chunks_checked\": {}, \"bytes_checked\": {}, \"problems\": {}, "
                           "\"recovery\": {}}}\n",
                           v.ok(), v.chunks_checked, v.bytes_checked, json_list(v.problems), recovery_json(r));
    } else {
        for (const auto& w : r.warnings)
            out += "recovery: " + w + "\n";
        for (const auto& p : v.problems)
            out += "problem: " + p + "\n";
        out += fmt::format("{}: {} chunks checked ({:.1f} MiB stored), {} problems\n", v.ok() ? "ok" : "FAILED",
                           v.chunks_checked, v.bytes_checked / 1048576.0, v.problems.size());
    }
    return v.ok() ? kOk : kProblems;
}

int cmd_gc(const std::vector<std::string>& args, const std::string& dir, bool json, std::string& out,
           std::string& err) {
    uint64_t target = 0;
    for (size_t i = 1; i < args.size(); i++) {
        if (args[i] == "--target" && i + 1 < args.size()) {
            auto t = parse_cache_size(args[++i]);
            if (!t) {
                err += "criu cache gc: --target: " + t.error().str() + "\n";
                return kUsage;
            }
            target = *t;
        } else {
            err += fmt::format("criu cache gc: unexpected argument '{}'\n", args[i]);
            return kUsage;
        }
    }
    auto c = ChunkCache::open(dir, {});
    if (!c) {
        err += "criu cache gc: " + c.error().str() + "\n";
        return kProblems;
    }
    auto g = (*c)->gc(target);
    if (!g) {
        err += "criu cache gc: " + g.error().str() + "\n";
        return kProblems;
    }
    if (json) {
        out += fmt::format("{{\"evicted\": {}, \"corrupt_dropped\": {}, \"segments_compacted\": {}, "
                           "\"disk_bytes_before\": {}, \"disk_bytes_after\": {}, \"warnings\": {}}}\n",
                           g->evicted, g->corrupt_dropped, g->segments_compacted, g->disk_bytes_before,
                           g->disk_bytes_after, json_list(g->warnings));
    } else {
        for (const auto& w : g->warnings)
            out += "warning: " + w + "\n";
        out += fmt::format("gc: evicted {}, dropped {} corrupt, compacted {} segments, disk {:.1f} -> {:.1f} MiB\n",
                           g->evicted, g->corrupt_dropped, g->segments_compacted, g->disk_bytes_before / 1048576.0,
                           g->disk_bytes_after / 1048576.0);
    }
    return g->warnings.empty() ? kOk : kProblems;
}

}  // namespace

Expected<uint64_t> parse_cache_size(std::string_view s) {
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = static_cast<uint64_t>(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return failf(ERANGE, "size '{}' is too large", s);
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return failf(EINVAL, "size '{}': expected a number with an optional K, M, G or T", s);
    std::string unit = lower(s.substr(i));
    int shift = -1;
    if (unit.empty() || unit == "b")
        shift = 0;
    else if (unit == "k" || unit == "kib" || unit == "kb")
        shift = 10;
    else if (unit == "m" || unit == "mib" || unit == "mb")
        shift = 20;
    else if (unit == "g" || unit == "gib" || unit == "gb")
        shift = 30;
    else if (unit == "t" || unit == "tib" || unit == "tb")
        shift = 40;
    if (shift < 0)
        return failf(EINVAL, "size '{}': unknown unit '{}'", s, s.substr(i));
    if (shift > 0 && v > (UINT64_MAX >> shift))
        return failf(ERANGE, "size '{}' is too large", s);
    return v << shift;
}

Expected<CacheMode> parse_cache_mode(std::string_view s) {
    if (s == "writeback")
        return CacheMode::writeback;
    if (s == "writethrough")
        return CacheMode::writethrough;
    return failf(EINVAL, "cache mode '{}': expected writeback or writethrough", s);
}

Expected<EvictionPolicy> parse_eviction_policy(std::string_view s) {
    if (s == "lru")
        return EvictionPolicy::lru;
    if (s == "fifo")
        return EvictionPolicy::fifo;
    return failf(EINVAL, "eviction policy '{}': expected lru or fifo", s);
}

int run_cache_command(const std::vector<std::string>& args, const std::string& cache_dir, bool json,
                      std::string& out, std::string& err) {
    if (args.empty()) {
        err += "usage: criu cache stat|verify|gc [--target SIZE] --cache-dir DIR [--json]\n";
        return kUsage;
    }
    if (cache_dir.empty()) {
        err += fmt::format("criu cache {}: --cache-dir is required\n", args[0]);
        return kUsage;
    }
    const std::string& cmd = args[0];
    if (cmd != "gc" && args.size() > 1) {
        err += fmt::format("criu cache {}: unexpected argument '{}'\n", cmd, args[1]);
        return kUsage;
    }
    if (cmd == "stat")
        return cmd_stat(cache_dir, json, out, err);
    if (cmd == "verify")
        return cmd_verify(cache_dir, json, out, err);
    if (cmd == "gc")
        return cmd_gc(args, cache_dir, json, out, err);
    err += fmt::format("criu cache: unknown subcommand '{}' (stat, verify, gc)\n", cmd);
    return kUsage;
}

int run_cache_command(const std::vector<std::string>& args, const std::string& cache_dir, bool json) {
    std::string out, err;
    int rc = run_cache_command(args, cache_dir, json, out, err);
    std::fputs(out.c_str(), stdout);
    std::fputs(err.c_str(), stderr);
    return rc;
}

}  // namespace criu
