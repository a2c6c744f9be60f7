#include "criu/backtrace/core_plan.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "images/page_store.h"

namespace criu {
namespace {

uint64_t page_down(uint64_t a) { return a & ~uint64_t(kPageSize - 1); }
uint64_t page_up(uint64_t a) { return a > UINT64_MAX - (kPageSize - 1) ? page_down(a) : page_down(a + kPageSize - 1); }

// Memory ranges taken so far, disjoint, each inside one VMA; charged to a budget.
class MemoryPicker {
public:
    MemoryPicker(const ProcessMemory& mem, uint64_t budget) : mem_(mem), budget_(budget) {}

    // Takes what is not yet taken of [lo, hi) ∩ VMA `vma`, lowest addresses first, while
    // the budget lasts. Returns false if the budget cut it short.
    bool take(size_t vma, uint64_t lo, uint64_t hi) {
        const images::Vma& v = mem_.vmas()[vma];
        lo = std::max<uint64_t>(page_down(lo), v.start());
        hi = std::min<uint64_t>(page_up(hi), v.end());
        uint64_t at = lo;
        while (at < hi) {
            // The taken range at or after `at`, or the one that ends above it.
            auto next = taken_.upper_bound(at);
            if (next != taken_.begin()) {
                auto prev = std::prev(next);
                if (prev->second.end > at) {
                    at = prev->second.end;
                    continue;
                }
            }
            uint64_t stop = next == taken_.end() ? hi : std::min<uint64_t>(hi, next->first);
            uint64_t want = stop - at;
            uint64_t got = std::min<uint64_t>(want, budget_ - used_);
            if (got > 0) {
                taken_[at] = Range{at + got, static_cast<uint32_t>(v.prot())};
                used_ += got;
            }
            if (got < want)
                return false;
            at = stop;
        }
        return true;
    }

    std::vector<CoreMemoryRange> ranges() const {
        std::vector<CoreMemoryRange> out;
        for (const auto& [start, r] : taken_)
            out.push_back(CoreMemoryRange{start, r.end - start, r.prot});
        return out;
    }

private:
    struct Range {
        uint64_t end;
        uint32_t prot;
    };
    const ProcessMemory& mem_;
    uint64_t budget_;
    uint64_t used_ = 0;
    std::map<uint64_t, Range> taken_;
};

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
        // Offset 0 of the file must sit at `bias` with nothing else mapped in between;
        // an ELF data segment mapped at another bias than its text lands here, and is
        // then read from the images only.
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

CoreLayout plan_core_layout(const ProcessMemory& mem, CorePlanInput in, const CorePlanOptions& opts,
                            std::vector<std::string>& warnings) {
    uint64_t budget = std::min<uint64_t>(opts.memory_budget, kMaxCoreMemoryBytes);
    MemoryPicker picker(mem, budget);
    bool cut = false;
    for (const CoreThread& t : in.threads) {
        uint64_t sp = t.regs.rsp;
        if (auto v = mem.find_vma(sp)) {
            uint64_t lo = page_down(sp);
            uint64_t room = mem.vmas()[*v].end() - lo;
            cut |= !picker.take(*v, lo, lo + std::min(room, opts.max_stack_bytes));
        }
    }
    for (const auto& [ss_sp, ss_size] : in.altstacks) {
        if (auto v = mem.find_vma(ss_sp))
            cut |= !picker.take(*v, ss_sp, ss_sp + std::min(ss_size, opts.max_stack_bytes));
    }
    const auto& vmas = mem.vmas();
    for (size_t i = 0; i < vmas.size(); i++) {
        if (vmas[i].kind() == images::VMA_STACK) {
            uint64_t size = std::min<uint64_t>(vmas[i].end() - vmas[i].start(), opts.max_stack_bytes);
            cut |= !picker.take(i, vmas[i].end() - size, vmas[i].end());
        } else if (vmas[i].kind() == images::VMA_VDSO) {
            cut |= !picker.take(i, vmas[i].start(), vmas[i].end());
        }
    }
    if (cut)
        warnings.push_back(fmt::format("stacks larger than the {} MiB budget were cut: deep frames may be missing",
                                       budget >> 20));

    CoreLayout layout;
    layout.pid = in.pid;
    layout.comm = std::move(in.comm);
    layout.threads = std::move(in.threads);
    layout.memory = picker.ranges();
    size_t room = kMaxCoreSegments - 1 - std::min(layout.memory.size(), kMaxCoreSegments - 1);
    layout.files = plan_files(mem, room);
    return layout;
}

}  // namespace criu
