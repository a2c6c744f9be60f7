// Content hashes of the pages an image set holds: pagehash-<pid>.bin next to its pagemap.
//
// This kernel has no soft-dirty, and uffd-wp tracking needs a long-lived daemon (KERNEL-NOTES
// section 4), so a dump that follows a pre-dump finds unchanged pages by comparing a hash of
// each page with the parent's hash of the same address. Comparing with the parent's data itself
// would read the whole parent image back from disk while the process is frozen (the pages
// file is written with O_DIRECT, so it is not in the page cache): slower than writing anew.
//
// Layout: u32 magic "CRPH" | u32 version | u64 count | count x {u64 vaddr, u64 hash}, vaddr
// strictly increasing and page aligned. Written by pre-dump always and by dump with
// --track-mem; read only as a hint: a missing or malformed file only means "write every page".
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "criu/core/error.h"
#include "images/image_dir.h"

namespace criu {

// 64-bit hash of one 4096-byte page (eight independent xor-multiply-rotate lanes, then mixed): fast
// enough to run at memory-read speed; not cryptographic (a process could only fool its own dump).
uint64_t page_hash(const void* page);

class PageHashes {
public:
    static std::string file_name(pid_t pid);
    // The hashes of `pid` in `dir`; an empty set when the file does not exist.
    static Expected<PageHashes> load(const ImageDir& dir, pid_t pid);
    Status save(const ImageDir& dir, pid_t pid) const;

    // Addresses must come in increasing order.
    void add(uint64_t vaddr, uint64_t hash) { entries_.push_back({vaddr, hash}); }
    std::optional<uint64_t> find(uint64_t vaddr) const;
    // The same for addresses asked in increasing order, walking `cursor` (start it at 0).
    std::optional<uint64_t> find_from(size_t& cursor, uint64_t vaddr) const;
    size_t size() const { return entries_.size(); }
    bool empty() const { return entries_.empty(); }

private:
    struct Entry {
        uint64_t vaddr;
        uint64_t hash;
    };
    static_assert(sizeof(Entry) == 16);
    std::vector<Entry> entries_;
};

}  // namespace criu
