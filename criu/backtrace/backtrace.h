// `criu show --backtraces`: every thread's call stack at the moment of the dump,
// unwound offline from an image directory with libunwind. Nothing runs: the threads'
// registers and the process's ELF objects become a small ELF core in memory (see
// synthetic_core.h) that libunwind-coredump reads, the dumped binaries and libraries
// are reopened from this host's filesystem for their unwind tables and symbols, and
// stack memory is read from the images' pages as the unwinder asks for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "criu/backtrace/backtrace_report.h"
#include "criu/core/error.h"

namespace criu {

struct BacktraceOptions {
    // Frames per thread; a deeper stack ends with an error saying it was cut.
    size_t max_frames = 256;
};

// Fails only when the directory itself cannot be read (no inventory, no pstree, a
// pre-dump); a process or thread that cannot be unwound carries its own error in the
// report, next to the others that could.
Expected<BacktraceReport> unwind_image_dir(const std::string& dir, const BacktraceOptions& opts = {});

}  // namespace criu
