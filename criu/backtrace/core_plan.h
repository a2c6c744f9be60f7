// Decides what a synthesized core holds for one process. Unwinding reads the stacks,
// the unwind tables and code of the mapped ELF objects, and the vDSO; nothing else.
//   - Memory (copied into the core, under a byte budget, most useful first): each
//     thread's stack from its sp upward, sigaltstacks, the [stack] VMA, the vDSO.
//   - Files (no copy; libunwind reads them): one range per ELF object, from its load
//     bias (where file offset 0 sits) over the following VMAs that map the same file at
//     the same bias. libunwind-coredump assumes exactly that shape: it reads a backing
//     file at offset (addr - p_vaddr) and looks for the ELF header at p_vaddr.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "criu/backtrace/process_memory.h"
#include "criu/backtrace/synthetic_core.h"

namespace criu {

struct CorePlanOptions {
    // Bytes of memory copied into the core for one process.
    uint64_t memory_budget = 256ull << 20;
    // Bytes taken above a thread's sp (or below the top of [stack]): deeper frames than
    // this are left out rather than a huge stack filling the budget alone.
    uint64_t max_stack_bytes = 64ull << 20;
};

struct CorePlanInput {
    int32_t pid = 0;
    std::string comm;
    std::vector<CoreThread> threads;
    // [ss_sp, ss_sp + ss_size) of every thread with an enabled sigaltstack.
    std::vector<std::pair<uint64_t, uint64_t>> altstacks;
};

CoreLayout plan_core_layout(const ProcessMemory& mem, CorePlanInput in, const CorePlanOptions& opts,
                            std::vector<std::string>& warnings);

}  // namespace criu
