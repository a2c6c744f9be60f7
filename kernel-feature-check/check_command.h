// `criu check`: the CLI parses its flags into CheckArgs and calls run_check_command.
#pragma once

#include <string>

#include "kernel-feature-check/features.h"

namespace criu::kfc {

struct CheckArgs {
    bool all = false;      // --all: also report the rows that are not required
    bool ms = false;       // --ms: accepted as the same check (CRIU's "memory snapshot" subset)
    std::string feature;   // --feature NAME[,NAME...] or "list"
    bool json = false;     // --json: the whole table as JSON
    bool use_cache = false;  // `criu check` probes afresh unless asked
};

// Prints to stdout/stderr and returns the exit code:
//   plain / --ms / --all: "Looks good." and 0 when every required feature works, else
//     "Does not look good." with the missing rows, and 1.
//   --feature NAME: "NAME is supported" (0) or "NAME is not supported" (1), as CRIU;
//     2 with "Unknown feature NAME" on stderr. Several names may be comma-separated.
//   --feature list: every feature name (and CRIU alias) on one line, 0.
//   --json: the table as JSON; 0 when required features work, else 1.
int run_check_command(const CheckArgs& args);

// The same on a given result, writing into strings (for tests and callers that
// already hold a KernelFeatures).
int run_check_command(const CheckArgs& args, const KernelFeatures& kf, std::string& out, std::string& err);

}  // namespace criu::kfc
