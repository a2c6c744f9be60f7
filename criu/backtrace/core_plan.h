// Decides what a synthesized core holds for one process. Stacks are not in it: the
// unwinder reads process memory straight from the images, page by page, wherever the
// frames lead (see core_unwinder.h). The core carries what libunwind-coredump can only
// find through its program headers:
//   - files: one range per ELF object, from its load bias (where file offset 0 sits)
//     over the following VMAs that map the same file at the same bias, with the file
//     attached. libunwind-coredump assumes exactly that shape: it looks for the ELF
//     header at p_vaddr and maps the backing file from offset 0 there;
//   - memory: the vDSO, an ELF object that exists only in memory, so that frames in it
//     have unwind tables and names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "criu/backtrace/process_memory.h"
#include "criu/backtrace/synthetic_core.h"

namespace criu {

CoreLayout plan_core_layout(const ProcessMemory& mem, int32_t pid, std::string comm, std::vector<CoreThread> threads);

}  // namespace criu
