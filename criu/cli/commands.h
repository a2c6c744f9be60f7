#pragma once

#include <string>
#include <vector>

#include "criu/core/options.h"

namespace criu {

// What the command line says beyond the shared Options.
struct CommandArgs {
    std::string name;
    std::vector<std::string> args;
    bool check_ms = false;
    bool check_all = false;
    std::string check_feature;
    bool json = false;
    bool backtraces = false;
    std::string cache_dir;
    // serve / migrate
    std::string listen;          // serve --listen ADDR:PORT
    std::string to;              // migrate --to ADDR:PORT
    bool once = false;           // serve --once
    bool post_copy = false;      // migrate --post-copy
    bool no_lazy_restore = false;  // migrate --no-lazy-restore
    std::string cache_size;      // migrate --cache-size N[K|M|G]
    std::string cache_mode;      // migrate --cache-mode writeback|writethrough
    std::string cache_policy;    // migrate --cache-policy lru|fifo
    bool throttle = false;       // migrate --throttle
    bool no_throttle = false;    // migrate --no-throttle
};

// Runs one command; returns the process exit code. Prints the final error, if any,
// as one line naming the cause plus the path of the full log.
int run_command(const CommandArgs& cmd, const Options& opts);

}  // namespace criu
