// What the restoring machine offers that a dump must match: the XSAVE layout (a sigframe with
// another size or features is refused or silently truncated by the kernel), the vDSO block
// of this kernel, the highest capability number, and the restorer's own rseq registration.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "criu/core/error.h"

namespace criu {

struct VdsoPartInfo {
    std::string name;   // "[vvar]", "[vvar_vclock]", "[vdso]"
    uint64_t start = 0; // where it is in this (criu's) address space
    uint64_t size = 0;
    uint64_t offset = 0;  // from the start of the block
};

struct HostInfo {
    uint64_t xsave_size = 0;  // CPUID(0xD,0).EBX: size of the standard format for XCR0's features
    uint64_t xcr0 = 0;
    std::vector<VdsoPartInfo> vdso;  // in address order; empty if this kernel maps no vDSO
    uint32_t cap_last_cap = 0;
    std::string kernel_release;
};

// Reads CPUID/XGETBV, /proc/self/maps and /proc/sys/kernel/cap_last_cap.
Expected<HostInfo> probe_host();

// The vDSO parts found in maps text (pure, for tests). Fails if the parts are not one
// contiguous block.
Expected<std::vector<VdsoPartInfo>> parse_vdso_block(const std::string& maps_text);

}  // namespace criu
