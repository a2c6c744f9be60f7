#include "images/page_store.h"

#include <cstring>

#include <zstd.h>

#include "images/image_io.h"

namespace criu {
namespace {

constexpr uint32_t kKnownFlags = images::PE_PRESENT | images::PE_PARENT | images::PE_ZERO | images::PE_LAZY;
constexpr size_t kHeaderChecked = 24;

uint32_t load_u32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

void store_u32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }

}  // namespace

std::string pages_file_name(int64_t id) { return fmt::format("pages-{}.img", id); }

const char* codec_name(PageCodec codec) {
    switch (codec) {
    case images::CODEC_RAW:
        return "raw";
    case images::CODEC_ZSTD:
        return "zstd";
    default:
        return "unknown";
    }
}

std::string encode_pages_header(PageCodec codec) {
    std::string b(kPagesHeaderSize, '\0');
    store_u32(b.data(), kPagesMagic);
    store_u32(b.data() + 4, kFormatMajor);
    store_u32(b.data() + 8, kFormatMinor);
    store_u32(b.data() + 12, static_cast<uint32_t>(codec));
    store_u32(b.data() + 16, kPageSize);
    store_u32(b.data() + 20, kPagesHeaderSize);
    store_u32(b.data() + 24, crc32c(b.data(), kHeaderChecked));
    return b;
}

Expected<PagesHeader> decode_pages_header(const void* block, size_t len, const std::string& path) {
    if (len < kPagesHeaderSize)
        return failf(EINVAL, "{}: not a pages file: {} bytes is too short for the {}-byte header", path, len,
                     kPagesHeaderSize);
    const char* b = static_cast<const char*>(block);
    uint32_t magic = load_u32(b);
    if (magic != kPagesMagic)
        return failf(EINVAL, "{}: not a pages file (magic {:#010x}, expected {:#010x})", path, magic, kPagesMagic);
    uint32_t stored = load_u32(b + 24), computed = crc32c(b, kHeaderChecked);
    if (stored != computed)
        return failf(EINVAL, "{}: header checksum mismatch (stored {:#010x}, computed {:#010x})", path, stored,
                     computed);
    PagesHeader h;
    h.major = load_u32(b + 4);
    h.minor = load_u32(b + 8);
    if (h.major != kFormatMajor)
        return failf(EINVAL, "{}: image format {}.{} is not supported (this criu reads {}.x)", path, h.major, h.minor,
                     kFormatMajor);
    uint32_t codec = load_u32(b + 12), page_size = load_u32(b + 16), header_size = load_u32(b + 20);
    if (codec != images::CODEC_RAW && codec != images::CODEC_ZSTD)
        return failf(EINVAL, "{}: unknown page codec {}", path, codec);
    if (page_size != kPageSize)
        return failf(EINVAL, "{}: page size {} is not supported (this criu uses {})", path, page_size, kPageSize);
    if (header_size != kPagesHeaderSize)
        return failf(EINVAL, "{}: header size {} is not supported (expected {})", path, header_size,
                     kPagesHeaderSize);
    h.codec = static_cast<PageCodec>(codec);
    return h;
}

Expected<PageEntry> validate_page_entry(const images::PagemapEntry& m, PageCodec codec, uint64_t prev_end,
                                        uint64_t pages_file_size, const std::string& what) {
    PageEntry e{m.vaddr(), m.nr_pages(), m.flags(), m.offset(), m.stored_size()};
    if (e.vaddr % kPageSize)
        return failf(EINVAL, "{} (vaddr {:#x}): address is not page aligned", what, e.vaddr);
    if (e.nr_pages == 0)
        return failf(EINVAL, "{} (vaddr {:#x}): zero pages", what, e.vaddr);
    if (e.vaddr >= kMaxUserAddress || e.size() > kMaxUserAddress - e.vaddr)
        return failf(EINVAL, "{} (vaddr {:#x}): {} pages reach past the end of user space ({:#x})", what, e.vaddr,
                     e.nr_pages, kMaxUserAddress);
    if (e.vaddr < prev_end)
        return failf(EINVAL, "{} (vaddr {:#x}): overlaps or precedes the previous entry, which ends at {:#x}", what,
                     e.vaddr, prev_end);
    if (e.flags & ~kKnownFlags)
        return failf(EINVAL, "{} (vaddr {:#x}): unknown flags {:#x}", what, e.vaddr, e.flags & ~kKnownFlags);
    int kinds = !!e.present() + !!e.parent() + !!e.zero();
    if (kinds != 1)
        return failf(EINVAL, "{} (vaddr {:#x}): flags {:#x} must have exactly one of present, parent, zero", what,
                     e.vaddr, e.flags);
    if (e.lazy() && !e.present())
        return failf(EINVAL, "{} (vaddr {:#x}): lazy pages must be present", what, e.vaddr);
    if (!e.present()) {
        if (e.offset || e.stored_size)
            return failf(EINVAL, "{} (vaddr {:#x}): entry without data has offset {} and size {}", what, e.vaddr,
                         e.offset, e.stored_size);
        return e;
    }
    if (e.offset < kPagesHeaderSize)
        return failf(EINVAL, "{} (vaddr {:#x}): data offset {} is inside the pages file header", what, e.vaddr,
                     e.offset);
    if (e.stored_size > pages_file_size || e.offset > pages_file_size - e.stored_size)
        return failf(EINVAL, "{} (vaddr {:#x}): data at offset {} size {} is past the end of the pages file ({} bytes)",
                     what, e.vaddr, e.offset, e.stored_size, pages_file_size);
    if (codec == images::CODEC_RAW) {
        if (e.offset % kPageSize)
            return failf(EINVAL, "{} (vaddr {:#x}): raw data offset {} is not page aligned", what, e.vaddr, e.offset);
        if (e.stored_size != e.size())
            return failf(EINVAL, "{} (vaddr {:#x}): raw size {} is not {} pages", what, e.vaddr, e.stored_size,
                         e.nr_pages);
        return e;
    }
    if (e.nr_pages > kMaxFramePages)
        return failf(EINVAL, "{} (vaddr {:#x}): {} pages in one zstd frame exceed the limit of {}", what, e.vaddr,
                     e.nr_pages, kMaxFramePages);
    if (e.stored_size == 0 || e.stored_size > ZSTD_compressBound(e.size()) + 4)
        return failf(EINVAL, "{} (vaddr {:#x}): zstd frame size {} is impossible for {} pages", what, e.vaddr,
                     e.stored_size, e.nr_pages);
    return e;
}

}  // namespace criu
