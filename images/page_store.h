// The page store: pagemap-<id>.img says which pages an image holds and where;
// pages-<id>.img holds the data. This header has what writer and reader share: the
// pages file's header block, the validated form of a pagemap entry, and the caps.
//
// pages-<id>.img layout:
//   block 0 (4096 bytes): u32 magic "CRPG" | u32 major | u32 minor | u32 codec |
//                         u32 page size | u32 header size | u32 crc32c of the previous 24 bytes | zeros
//   then data: raw pages, each 4 KiB aligned in the file (so it can be written with
//   O_DIRECT and mapped or pread straight into place), or zstd frames back to back.
#pragma once

#include <cstdint>
#include <string>

#include "criu/core/error.h"
#include "proto/pagemap.pb.h"

namespace criu {

inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kPagesMagic = 0x47505243;  // "CRPG"
inline constexpr uint32_t kPagesHeaderSize = 4096;
// A zstd frame holds at most this many pages; bounds the reader's buffers (4 MiB).
inline constexpr uint32_t kMaxFramePages = 1024;
// Highest user address with 5-level paging; no entry may reach past it.
inline constexpr uint64_t kMaxUserAddress = 1ull << 56;

using images::PageCodec;

// One pagemap entry after validation: vaddr page aligned, [vaddr, end()) in user space,
// exactly one of present/parent/zero, data inside the pages file.
struct PageEntry {
    uint64_t vaddr = 0;
    uint32_t nr_pages = 0;
    uint32_t flags = 0;        // images::PagemapFlag bits
    uint64_t offset = 0;       // in the pages file (present only)
    uint64_t stored_size = 0;  // bytes there (present only)

    uint64_t end() const { return vaddr + uint64_t(nr_pages) * kPageSize; }
    uint64_t size() const { return uint64_t(nr_pages) * kPageSize; }
    bool present() const { return flags & images::PE_PRESENT; }
    bool parent() const { return flags & images::PE_PARENT; }
    bool zero() const { return flags & images::PE_ZERO; }
    bool lazy() const { return flags & images::PE_LAZY; }
    bool operator==(const PageEntry&) const = default;
};

std::string pages_file_name(int64_t id);
const char* codec_name(PageCodec codec);

// The 4096-byte header block of a pages file.
std::string encode_pages_header(PageCodec codec);

struct PagesHeader {
    uint32_t major = 0;
    uint32_t minor = 0;
    PageCodec codec = images::CODEC_RAW;
};
// Checks magic, checksum, format major, page size and codec of a header block.
Expected<PagesHeader> decode_pages_header(const void* block, size_t len, const std::string& path);

// Checks one entry on its own and against its predecessor (`prev_end`, 0 for the
// first) and the pages file; `what` prefixes the message ("<pagemap>: entry 3").
Expected<PageEntry> validate_page_entry(const images::PagemapEntry& e, PageCodec codec, uint64_t prev_end,
                                        uint64_t pages_file_size, const std::string& what);

}  // namespace criu
