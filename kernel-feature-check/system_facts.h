// Numeric facts about this kernel and CPU that dump and restore need as values,
// not just as yes/no: the vDSO block layout and the XSAVE area.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "criu/core/error.h"

namespace criu::kfc {

// One VMA of the vDSO block ([vvar], [vvar_vclock] on 6.13+, [vdso]), with its
// offset from the start of the block as seen in /proc/self/maps.
struct VdsoArea {
    std::string name;
    uint64_t offset = 0;
    uint64_t size = 0;
};

struct XsaveInfo {
    bool osxsave = false;       // CPUID.1:ECX.OSXSAVE: the kernel enabled XSAVE
    uint32_t size = 0;          // CPUID.(0xD,0).EBX: standard-format size for the features in XCR0
    uint64_t xcr0 = 0;          // xgetbv(0): user state components enabled
    uint64_t supported = 0;     // CPUID.(0xD,0).EDX:EAX: components the CPU supports
    bool xsavec = false;        // CPUID.(0xD,1).EAX bit 1
    bool xsaves = false;        // CPUID.(0xD,1).EAX bit 3
};

// Parses /proc/self/maps. Fails when there is no [vdso] or the areas are not one
// contiguous block (restore moves them together and keeps this layout).
Expected<std::vector<VdsoArea>> read_vdso_layout();
std::string vdso_layout_text(const std::vector<VdsoArea>& layout);

Expected<XsaveInfo> read_xsave_info();
// "x87|sse|avx|..." for an XCR0 value.
std::string xfeatures_text(uint64_t mask);
// Size of the buffer PTRACE_GETREGSET(NT_X86_XSTATE) returns for a traced child:
// the layout the dumper reads and the restorer's signal frame must carry. It can be
// smaller than CPUID's size when XCR0 has dynamically enabled components (AMX).
Expected<uint32_t> ptrace_xstate_size();

}  // namespace criu::kfc
