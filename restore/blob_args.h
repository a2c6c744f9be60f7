// Lays out the blob area of one restored process and fills struct blob_args (blob/blob_abi.h)
// from the validated images, the page plan and the opened VMA objects.
//
// Area layout, from its base:  code | args (with sigframes and fpstates) | main stack |
//                              thread stacks | vDSO parking
// The fd table inside the args holds slots; the restored child, which moves the service fds
// to their final numbers, patches the numbers in (and its own rseq registration).
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "criu/core/error.h"
#include "restore/blob/blob_abi.h"
#include "restore/host_info.h"
#include "restore/page_plan.h"
#include "restore/process_images.h"
#include "restore/vma_files.h"

namespace criu {

struct BlobLayout {
    uint64_t base = 0;
    uint64_t size = 0;
    uint64_t code_size = 0;   // page rounded; code lives at [base, base + code_size)
    uint64_t args_off = 0;
    uint64_t args_size = 0;   // page rounded
    uint64_t main_stack_top = 0;
    uint64_t vdso_park = 0;

    uint64_t args_addr() const { return base + args_off; }
};

// Which fd of criu goes into which slot of the blob's fd table.
struct BlobFdSlots {
    int report_fd = -1;
    int go_fd = -1;
    std::vector<int> page_sources;  // PagePlan::sources
    std::vector<int> vma_objects;   // VmaFiles::fds, in order

    int first_page_slot() const { return BLOB_FD_FIRST_DATA; }
    int first_vma_slot() const { return BLOB_FD_FIRST_DATA + int(page_sources.size()); }
    // Every fd in slot order.
    std::vector<int> all() const;
};

struct BlobArgsInput {
    const RestoredProcessImages* p = nullptr;
    const HostInfo* host = nullptr;
    const PagePlan* pages = nullptr;
    const VmaFiles* files = nullptr;
    const BlobFdSlots* slots = nullptr;
    uint64_t code_size = 0;     // bytes of the blob binary
    bool is_tree_root = true;   // the parent-death signal refers to a parent outside the dump
    const std::set<int>* sysv_removed = nullptr;  // System V segments removed before the dump
};

class BlobArgs {
public:
    // Builds everything that does not depend on where the area goes.
    static Expected<BlobArgs> build(const BlobArgsInput& in);

    // Total bytes the area needs.
    uint64_t area_size() const { return layout_.size; }
    // Fixes the area at `base` and fills every absolute address (frames, stacks, parking).
    void place(uint64_t base);

    const BlobLayout& layout() const { return layout_; }
    const std::vector<uint8_t>& bytes() const { return buf_; }
    std::vector<uint8_t>& bytes() { return buf_; }

    // Where the restored child patches its part in.
    static constexpr size_t kOwnRseqOff = offsetof(blob_args, own_rseq_ptr);
    uint32_t fds_off() const { return fds_off_; }
    uint32_t nr_fds() const { return nr_fds_; }

private:
    BlobArgs() = default;
    template <class T>
    T* at(size_t off) {
        return reinterpret_cast<T*>(buf_.data() + off);
    }
    blob_args* args() { return at<blob_args>(0); }
    size_t reserve(size_t bytes, size_t align);

    std::vector<uint8_t> buf_;
    BlobLayout layout_;
    uint32_t fds_off_ = 0;
    uint32_t nr_fds_ = 0;
    const RestoredProcessImages* p_ = nullptr;
    uint64_t xcr0_ = 0;
    std::vector<size_t> frame_offs_;    // per thread: rt_sigframe
    std::vector<size_t> fpstate_offs_;  // per thread: XSAVE area (64-byte aligned)
    uint64_t stacks_off_ = 0;           // from the base: the first thread stack
    uint64_t park_off_ = 0;
};

}  // namespace criu
