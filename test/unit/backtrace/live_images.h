// Test scaffolding: the bt_target program as a child, and a miniature dumper that
// writes, for a live process, the images unwinding reads (inventory, pstree, core, mm,
// pagemap/pages). It lets the unwinder be tested without the real dumper, and against
// images crafted to be hostile.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "criu/core/error.h"
#include "images/page_store.h"

namespace criu::test {

// bt_target (BT_TARGET_PATH), its stdout a pipe; the constructor returns once it printed
// "ready". Killed and reaped on destruction. Throws if it does not start.
class Target {
public:
    explicit Target(const std::vector<std::string>& args = {});
    ~Target();
    Target(const Target&) = delete;
    Target& operator=(const Target&) = delete;
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
};

struct LiveDumpOptions {
    PageCodec codec = images::CODEC_RAW;
    // The real dumper leaves the vDSO out (a restore maps the new kernel's); with this,
    // its pages go into the images like anonymous memory.
    bool vdso_pages = false;
};

// Seizes every thread of `pid` with ptrace, writes the images into `dir` (created),
// and detaches again. The pages of every private anonymous and writable mapping go in,
// as a dumper would write them; file-backed read-only mappings do not.
Status write_live_images(pid_t pid, const std::string& dir, const LiveDumpOptions& opts = {});

}  // namespace criu::test
