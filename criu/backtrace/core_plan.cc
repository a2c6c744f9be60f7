#include "criu/backtrace/core_plan.h"

namespace criu {
namespace {

// A vDSO is two pages on x86-64; a "vDSO" of more is not one, and is not copied.
constexpr uint64_t kMaxVdsoBytes = 1 << 20;

std::vector<CoreFileRange> plan_files(const ProcessMemory& mem, size_t max_ranges) {
    std::vector<CoreFileRange> out;
    const auto& vmas = mem.vmas();
    size_t i = 0;
    while (i < vmas.size() && out.size() < max_ranges) {
        const images::Vma& v = vmas[i];
        int id = mem.file_id(i);
        if (id < 0 || mem.file_fd(i) < 0 || v.pgoff() > v.start()) {
            i++;
            continue;
        }
        uint64_t bias = v.start() - v.pgoff();
        // Offset 0 of the file must sit at `bias` with nothing else mapped in between.
        // An ELF data segment, mapped at another bias than its text, lands here: it
        // needs no range, the unwinder reads its bytes through ProcessMemory.
        if (i > 0 && vmas[i - 1].end() > bias) {
            i++;
            continue;
        }
        uint64_t end = v.end();
        uint32_t prot = v.prot();
        size_t j = i + 1;
        for (; j < vmas.size(); j++) {
            const images::Vma& w = vmas[j];
            if (mem.file_id(j) != id || w.pgoff() > w.start() || w.start() - w.pgoff() != bias)
                break;
            end = w.end();
            prot |= w.prot();
        }
        out.push_back(CoreFileRange{bias, end - bias, prot, mem.file_fd(i)});
        i = j;
    }
    return out;
}

}  // namespace

CoreLayout plan_core_layout(const ProcessMemory& mem, int32_t pid, std::string comm, std::vector<CoreThread> threads) {
    CoreLayout layout;
    layout.pid = pid;
    layout.comm = std::move(comm);
    layout.threads = std::move(threads);
    const auto& vmas = mem.vmas();
    for (size_t i = 0; i < vmas.size(); i++) {
        const images::Vma& v = vmas[i];
        if (v.kind() != images::VMA_VDSO)
            continue;
        if (v.end() - v.start() <= kMaxVdsoBytes && (mem.has_pages(v.start(), v.end()) || mem.has_fallback(i)))
            layout.memory.push_back(CoreMemoryRange{v.start(), v.end() - v.start(), v.prot()});
        break;
    }
    layout.files = plan_files(mem, kMaxCoreSegments - 1 - layout.memory.size());
    return layout;
}

}  // namespace criu
