// `criu show`: any image, or a whole image directory, as one JSON document.
#pragma once

#include <string>

#include "criu/core/error.h"

namespace criu {

// Given a directory: {"dir": ..., "images": [{"file": "core-42.img", "type": "core",
// "records": [...]}, ...]}, every file in name order; a file that fails to read keeps
// the records read so far plus "error", and files that are not images are listed with
// "type": "unknown". Given a file: that file's object alone, and a read error is an error.
//
// pages-*.img is summarised (size, codec, pages), not dumped; pagemap-*.img gets its
// entries plus "totals" and "check" (the page store's own validation verdict).
// With `decode_registers`, core images also get "registers": each thread's gpregs
// decoded into named x86-64 registers (rip, rsp, ...), the start of any backtrace.
Expected<std::string> show_path_json(const std::string& path, bool decode_registers = false);

}  // namespace criu
