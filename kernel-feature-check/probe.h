// One row of the kernel feature table, and the probe that fills it.
// Each probe exercises the feature for real (a syscall, an ioctl, a round trip),
// never reads the kernel config: a config can say yes while a sysctl, a missing
// module or a seccomp policy says no.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace criu::kfc {

enum class Category {
    Required,    // dump/restore of a plain process tree cannot work without it
    SomeStates,  // needed only when the tree holds a certain resource or mode
    Optional,    // improves speed or reach; a fallback exists
};

std::string_view category_name(Category c);  // "required", "needed for some states", "optional"
std::string_view category_key(Category c);   // "required", "some_states", "optional" (JSON)

struct ProbeResult {
    bool present = false;
    std::string detail;  // what was seen: a value, or the kernel's reason for "no"
};

struct Probe {
    const char* name;
    Category category;
    const char* enables;   // what this tool can do because of it
    const char* fallback;  // what happens when it is missing
    ProbeResult (*run)();
};

// The rows of each category file, in table order. features.cc concatenates them.
std::span<const Probe> process_probes();    // probes_process.cc
std::span<const Probe> memory_probes();     // probes_memory.cc
std::span<const Probe> net_probes();        // probes_net.cc
std::span<const Probe> ns_probes();         // probes_ns.cc
std::span<const Probe> system_probes();     // probes_system.cc

}  // namespace criu::kfc
