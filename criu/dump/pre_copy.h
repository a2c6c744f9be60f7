// `criu dump --pre-copy [--max-downtime-ms N]`: copy memory while the process runs, in rounds,
// until what is left to copy fits the downtime target; then freeze it and dump only the last
// delta (plus its state and fds).
//
// Layout of the result (restores with `criu restore -D DIR`):
//   DIR/pre-copy-1/   round 1: every page (a memory-only image set, like a pre-dump)
//   DIR/pre-copy-K/   round K: the pages written during round K-1; parent ../pre-copy-(K-1)
//   DIR/              the final dump: pages written during the last round; parent pre-copy-N
//
// The process is stopped only to start the tracker (one injected userfaultfd() call; the
// write-protection of its memory, ~13 ms per GiB, is armed once it runs again) and for the
// final dump. Rounds read a running process: a page
// written while it is being read is simply reported again by the next collect(), and a range
// unmapped meanwhile is carried over as dirty.
//
// When to stop: after each round, the dirty rate (pages written per second during the round)
// and the copy speed (pages per second the round achieved) predict what the next round leaves;
// the loop stops once the pages dirtied during the last round would be copied within
// max_downtime_ms, or when a round no longer shrinks the dirty set by a quarter (no
// convergence: the workload dirties as fast as we copy), or after kMaxPreCopyRounds.
#pragma once

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"

namespace criu {

inline constexpr unsigned kMaxPreCopyRounds = 8;

Status run_pre_copy_dump(const Options& opts, Log& log);

// The convergence decision, for tests: after round `round`, the final step is estimated to find
// `estimate` dirty pages (the previous round's estimate was `prev_estimate`, 0 if none), and
// copying runs at `pages_per_s`. True when the next step should be the final, frozen one.
bool pre_copy_should_stop(unsigned round, uint64_t estimate, uint64_t prev_estimate, double pages_per_s,
                          unsigned max_downtime_ms);

}  // namespace criu
