// `criu lazy-pages -D DIR`: the post-copy daemon, and the side of `criu restore --lazy-pages`
// that talks to it.
//
// The daemon listens on DIR/lazy-pages.socket (a unix stream socket that appears only once it
// accepts). For each restored process, restore sends a LazyHello with the process's
// userfaultfd (SCM_RIGHTS) and its lazy ranges, and waits for a LazyAck: the daemon has opened
// that pid's pages and serves its faults from then on. When restore closes the connection and
// every page of every process is in (or the processes are gone), the daemon exits.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/core/unique_fd.h"
#include "restore/lazy_fill.h"

namespace criu {

inline constexpr const char* kLazySocketName = "lazy-pages.socket";

// Restore side: connects to the daemon of `images_dir`; a clear error when none listens.
Expected<UniqueFd> connect_lazy_daemon(const std::string& images_dir);
// Hands one process over and waits for the daemon's answer.
Status send_lazy_process(int sock, int pid, int uffd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

class PageReader;
// What post-copy owes a process: exactly the pages its images hold (data, or the parent
// chain's) inside its lazy ranges; zero pages are not tracked (a fault there gets the zero page).
LazyTracker lazy_tracker_for(const PageReader& reader, const std::vector<std::pair<uint64_t, uint64_t>>& ranges);
// The parts of `ranges` (sorted, disjoint) where the images hold data pages (not zero ones), in
// address order: what a lazy restore owes from the images.
std::vector<std::pair<uint64_t, uint64_t>> image_pages_in(const PageReader& reader,
                                                          const std::vector<std::pair<uint64_t, uint64_t>>& ranges);

// `criu lazy-pages`: returns the exit code.
Expected<int> run_lazy_pages(const Options& opts, Log& log);

}  // namespace criu
