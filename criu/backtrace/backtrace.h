// `criu show --backtraces`: every thread's call stack at the moment of the dump,
// unwound offline from an image directory with libunwind. Nothing runs: the images
// become an ELF core in memory (see synthetic_core.h) that libunwind-coredump reads,
// with the dumped binaries and libraries reopened from this host's filesystem for
// their unwind tables and symbols.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "criu/backtrace/backtrace_report.h"
#include "criu/core/error.h"

namespace criu {

struct BacktraceOptions {
    size_t max_frames = 256;
    // Per process: stack bytes copied from the images into the synthesized core.
    uint64_t memory_budget = 256ull << 20;
};

// Fails only when the directory itself cannot be read (no inventory, no pstree, a
// pre-dump); a process or thread that cannot be unwound carries its own error in the
// report, next to the others that could.
Expected<BacktraceReport> unwind_image_dir(const std::string& dir, const BacktraceOptions& opts = {});

}  // namespace criu
