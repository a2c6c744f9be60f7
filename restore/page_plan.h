// Where every dumped page of one process comes from, resolved in phase 1 so that the blob only
// has to pread(): runs of {vaddr, pages, source fd, offset}. PE_PARENT ranges are followed down
// the parent image chain; zstd frames are decoded here into a memfd (the blob has no zstd);
// PE_ZERO pages become explicit zero runs only where a fresh mapping would not read as zero
// (private file mappings). Every entry must lie in a VMA that can hold dumped pages.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "images/page_reader.h"
#include "proto/mm.pb.h"

namespace criu {

struct PlannedRun {
    uint64_t vaddr = 0;
    uint64_t nr_pages = 0;
    int source = -1;      // index into PagePlan::sources, -1: write zeros
    uint64_t offset = 0;  // in the source
    // Index into PagePlan::sources of an O_DIRECT twin of `source` this run may be read
    // through (its offset is block aligned), or -1.
    int direct_source = -1;
    bool operator==(const PlannedRun&) const = default;
};

struct PagePlan {
    std::vector<PlannedRun> runs;     // address order, never crossing a VMA boundary
    std::vector<int> sources;         // fds: borrowed from the PageReader chain, or owned_ below
    std::vector<UniqueFd> owned;      // memfds holding decoded zstd data, O_DIRECT twins
    std::vector<bool> vma_filled;     // per MmInfo.vmas index: some run writes into it
    uint64_t pages_from_images = 0;
    uint64_t pages_zeroed = 0;
    // With `lazy`: VMAs left empty for the lazy-pages daemon (whole VMAs, address order),
    // and how many of their pages the images hold.
    std::vector<std::pair<uint64_t, uint64_t>> lazy_ranges;
    uint64_t pages_lazy = 0;
};

// Kinds of VMA whose pages the dump holds (private memory, COWed file pages, shared anon and
// memfd contents); pages of the others come from their files or the kernel.
bool vma_takes_pages(images::VmaKind kind);
// Private mappings whose file cannot be reopened (a private memfd, a deleted file) are dumped
// page by page in full; they come back as anonymous memory holding those pages.
bool vma_mapped_anonymously(const images::Vma& v);
// A fresh mapping reads as zero where the dump says "zero" (anonymous memory, shmem).
bool vma_zero_is_free(const images::Vma& v);

// Private anonymous writable memory (heap, stack, anonymous mappings): what post-copy leaves
// to the lazy-pages daemon. The rest (file COW pages, shared memory) is always filled.
bool vma_can_be_lazy(const images::Vma& v);

// `pid` names the process in messages. With `lazy`, VMAs that vma_can_be_lazy() and hold
// dumped pages get no runs and are listed in lazy_ranges instead.
Expected<PagePlan> plan_pages(PageReader& reader, const images::MmInfo& mm, pid_t pid, bool lazy = false);

}  // namespace criu
