// DumpContext: everything one dump carries (options, log, image directory, kernel features,
// stats), so nothing in the dumper reads a global. Also the two ways a dump is cut short on
// purpose: SIGINT/SIGTERM, and fault injection for the rollback tests.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "images/image_dir.h"
#include "images/page_sink.h"
#include "kernel-feature-check/features.h"
#include "proto/stats.pb.h"

namespace criu {

// The phases a dump goes through, in order; CRIU_FAULT_INJECT=<name> makes that phase fail
// (see DumpContext::checkpoint). "remote" and "sibling" fail while a RemoteSyscalls scope is
// open in the target, "pages" while the page writer thread runs.
inline constexpr const char* kDumpPhases[] = {
    "preflight", "seize", "threads", "remote", "sibling", "mm", "pages", "fds", "images", "inventory",
};

// Installs SIGINT/SIGTERM handlers for its lifetime that only raise a flag; the dump checks it
// between steps and rolls back through its RAII scopes. The previous handlers come back after.
class InterruptGuard {
public:
    InterruptGuard();
    ~InterruptGuard();
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;
    // The signal that arrived, or 0.
    static int pending();
    // Clears the flag (tests).
    static void reset();
};

struct DumpContext {
    DumpContext(const Options& o, Log& l, ImageDir d, kfc::KernelFeatures f);

    const Options& opts;
    Log& log;
    ImageDir dir;
    kfc::KernelFeatures features;
    images::DumpStats stats;
    std::string fault_phase;  // from CRIU_FAULT_INJECT, empty when none
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    // Where pages go; empty: pages-/pagemap- images in `dir` (see images/page_sink.h).
    PageSinkFactory page_sinks;
    // Whether a pre-dump (or dump -R --track-mem) records page hashes (DumpHooks::page_hashes).
    bool page_hashes = true;

    // Called at the start of each phase: fails if the dump was interrupted by a signal, or if
    // this phase was chosen by CRIU_FAULT_INJECT. Every failure unwinds the same way.
    Status checkpoint(std::string_view phase);
};

// Microseconds since `t`.
uint64_t micros_since(std::chrono::steady_clock::time_point t);

}  // namespace criu
