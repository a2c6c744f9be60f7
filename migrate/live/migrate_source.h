// `criu migrate -t PID --to ADDR:PORT --auth-key FILE [--max-downtime-ms N] [--stats-json F]`:
// the source of a live migration (the destination is `criu serve`, serve.h).
//
// Pre-copy rounds while the process runs (pre-dumps, each an increment of the one before),
// until what the last round had to send again fits --max-downtime-ms at the bandwidth that
// round measured (or a round stops shrinking the dirty set, or max_rounds; then the process
// may be throttled through a cgroup until the rounds converge: convergence.h); then the frozen
// dump of what changed since, and the rest of the state. Every set's pages stream from the
// process's memory to the destination; a private scratch directory keeps the set's layout
// (pagemap, a sparse pages file: where the next increment finds its parent) and the other
// images, which are sent from there; the destination restores the chain and
// holds the process; only then is the source killed, and the destination lets its copy run. Any failure before that point (the destination refuses, dies, goes silent, the
// connection drops) resumes the source exactly as it was; the destination keeps nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "migrate/cache/cache_stats.h"
#include "migrate/net/channel.h"

namespace criu {

struct MigrateOptions {
    Options base;                 // pid, verbosity, --compress, --stats-json, progress
    std::string to;               // ADDR:PORT
    std::string auth_key_file;
    std::string cache_dir;        // optional: pages through the SSD cache (remote_chunks.h)
    uint64_t cache_size = 0;      // --cache-size; 0 keeps the directory's (1 GiB for a new one)
    // --cache-mode: writeback (default) acknowledges pages once on the local SSD and sends
    // them in the background, each image set ending with the backlog; writethrough waits
    // for the destination at every batch.
    CacheMode cache_mode = CacheMode::writeback;
    std::optional<EvictionPolicy> cache_policy;  // --cache-policy; nullopt keeps the directory's
    int max_downtime_ms = 300;
    int max_rounds = 8;           // pre-copy rounds at most; 0: stop-and-copy
    // When pre-copy does not converge (or with max_rounds 0), the last round sends only what
    // the destination cannot fetch later; it fetches the rest while the process runs there.
    bool post_copy = false;
    // The destination lets the process run once its non-memory state is restored and fills
    // its memory in the background (serve.h); false: every page is in before it runs.
    bool lazy_restore = true;
    // Rounds that do not converge: throttle the process's CPU through a cgroup until they
    // do (convergence.h, cgroup_throttle.h). nullopt: throttle unless post_copy is set
    // (post-copy was asked for); true with post_copy: throttle first, post-copy if even
    // the strongest throttle does not converge.
    std::optional<bool> throttle;
    ChannelOptions channel;
    int restore_timeout_ms = 300000;
};

struct MigrateRound {
    uint64_t pages = 0;
    uint64_t bytes = 0;  // bytes on the wire in this round
    uint64_t ms = 0;
    bool frozen = false;
};

struct MigrateStats {
    std::vector<MigrateRound> rounds;
    uint64_t downtime_ms = 0;   // frozen on the source until running on the destination
    uint64_t total_ms = 0;
    uint64_t bytes_sent = 0;    // on the wire, framing and tags included
    uint64_t pages_sent = 0;
    uint64_t page_bytes_raw = 0;
    uint64_t image_bytes = 0;   // non-page images
    uint64_t restore_ms = 0;    // on the destination, as seen from here
    bool lazy_restore = false;
    uint64_t fill_ms = 0;       // lazy restore: from the hold until every page was in, on the destination
    uint64_t fill_faults = 0;   // faults the destination's filler answered while the process ran
    bool post_copy = false;     // the last round left its pages here, fetched by the destination later
    uint64_t postcopy_pages = 0;     // pages of the last round announced as remote
    uint64_t postcopy_requests = 0;  // page requests answered after the freeze
    uint64_t postcopy_pages_served = 0;
    uint64_t postcopy_bytes = 0;     // on the wire from `released` to `done`
    bool throttled = false;           // the process was throttled through a cgroup
    double throttle_min_cpu_pct = 0;  // the strongest limit, in % of one CPU
    uint64_t throttle_rounds = 0;     // rounds run throttled
    bool cache_used = false;
    uint64_t chunks_sent = 0, chunk_raw_bytes_sent = 0, chunk_stored_bytes_sent = 0;
    std::string to_json() const;
};

Expected<MigrateStats> run_migrate(const MigrateOptions& opts, Log& log);

}  // namespace criu
