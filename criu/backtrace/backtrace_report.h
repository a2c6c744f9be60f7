// What `criu show --backtraces` reports: for each dumped process, each thread's call
// stack at the moment of the dump, unwound offline from the images. Plain data plus
// its two renderings (JSON for tools, text for people).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace criu {

struct BacktraceFrame {
    uint64_t ip = 0;  // frame 0: where the thread stopped; above: the return address
    uint64_t sp = 0;
    // Name of the function holding ip (demangled C++ where possible), empty if no symbol
    // table of the module covers it; `symbol_offset` is ip - start of that function.
    std::string symbol;
    uint64_t symbol_offset = 0;
    // Path of the mapping holding ip as the images recorded it ("/usr/lib/.../libc.so.6",
    // "[vdso]"), empty for anonymous memory; `module_offset` is ip's offset in that file.
    std::string module;
    std::optional<uint64_t> module_offset;
    // ip is the signal-return trampoline (__restore_rt): the frame below was running a
    // signal handler, the frame above is where the signal interrupted the thread.
    bool signal_frame = false;
};

struct ThreadBacktrace {
    int32_t tid = 0;
    std::vector<BacktraceFrame> frames;
    // Empty when the unwinder reached the outermost frame. Otherwise why it stopped or
    // could not start; `frames` then holds what was unwound before (maybe nothing).
    std::string error;
};

struct ProcessBacktrace {
    int32_t pid = 0;
    std::string comm;
    std::vector<ThreadBacktrace> threads;
    // Set when the process could not be unwound at all (zombie, unreadable images); the
    // other processes of the report are unaffected.
    std::string error;
    // Notes that lower confidence without stopping the unwind (a library that changed on
    // disk since the dump, memory left out because of the size cap).
    std::vector<std::string> warnings;
};

struct BacktraceReport {
    std::string dir;
    std::vector<ProcessBacktrace> processes;
};

// One JSON object (RFC 8259). Addresses are "0x..." strings: JSON numbers lose
// precision above 2^53, and user-space addresses go to 2^47 and beyond.
std::string backtraces_to_json(const BacktraceReport& report);

// gdb-like text, one line per frame:
//   pid 4211 (server)
//     thread 4211
//       #0  0x00007f3a5c2e4b27 in pause+0x17 (/usr/lib/x86_64-linux-gnu/libc.so.6) sp=0x7ffd...
//       #4  0x00007f3a5c250050 in <signal handler called> (/usr/lib/...) sp=0x7f3a...
std::string backtraces_to_text(const BacktraceReport& report);

}  // namespace criu
