// `criu cache stat|verify|gc --cache-dir DIR`, and the parsers for the cache options
// that dump, pre-dump and migrate take (--cache-dir, --cache-size, --cache-mode,
// --cache-policy). The CLI wires these in; nothing here parses argv itself.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "migrate/cache/cache_stats.h"

namespace criu {

// "1073741824", "512K", "64M", "4G", "1T" (binary units; "MiB"/"GiB" spellings too).
Expected<uint64_t> parse_cache_size(std::string_view s);
Expected<CacheMode> parse_cache_mode(std::string_view s);  // writeback | writethrough
Expected<EvictionPolicy> parse_eviction_policy(std::string_view s);  // lru | fifo

// args[0] is the subcommand:
//   stat             counters and state, one line (dmsetup-like) or one JSON object;
//                    opens read-only, so it also works next to a running dump
//   verify           recovers if needed, reads and checks every chunk and the index
//   gc [--target N]  drops corrupt entries, evicts clean unpinned chunks down to N
//                    live bytes (default: the live limit), compacts, checkpoints
// Returns 0 when all is well, 1 when problems were found or the command failed, 2 on
// a usage error. Output goes to `out`, diagnostics to `err`.
int run_cache_command(const std::vector<std::string>& args, const std::string& cache_dir, bool json,
                      std::string& out, std::string& err);
// Same, printing to stdout and stderr.
int run_cache_command(const std::vector<std::string>& args, const std::string& cache_dir, bool json);

}  // namespace criu
