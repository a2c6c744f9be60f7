// Reads one process's pages back: pagemap-<id>.img + pages-<id>.img, and the same
// pair in each ancestor image for PE_PARENT ranges. Everything is validated at open(),
// before a single page is handed out: entries sorted and non-overlapping, inside user
// space, data inside the pages file, every parent range covered by the parent image.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "images/image_dir.h"
#include "images/page_store.h"

namespace criu {

class PageReader {
public:
    // With `with_parents`, resolves the directory's parent chain and opens the same id
    // there; an ancestor without pagemap-<id>.img ends the chain (the process did not
    // exist then), and a parent range nothing covers is an error here.
    static Expected<PageReader> open(const ImageDir& dir, int64_t id, bool with_parents = true);

    const images::PagemapHead& head() const { return head_; }
    const std::vector<PageEntry>& entries() const { return entries_; }
    const std::string& pagemap_path() const { return pagemap_path_; }
    // The next image up the chain, if opened with parents and it has this id.
    const PageReader* parent() const { return parent_.get(); }

    Status for_each_entry(const std::function<Status(const PageEntry&)>& fn) const;

    // Fills `dst` (entry.nr_pages * 4096 bytes) with the entry's pages: decoded data,
    // zeros, or the parent chain's pages. `e` must be one of entries().
    Status read_pages(const PageEntry& e, void* dst);
    // Fills `dst` with [vaddr, vaddr + nr_pages * 4096), resolving each page through the
    // chain. A page no image has is an error naming its address.
    Status read_range(uint64_t vaddr, uint64_t nr_pages, void* dst);

    // For raw present entries: where the bytes are, so the restorer can pread() (or
    // mmap) them straight into place. Empty for zstd, zero and parent entries.
    struct RawLocation {
        int fd;
        uint64_t offset;
        uint64_t length;
    };
    std::optional<RawLocation> raw_location(const PageEntry& e) const;

    // Decoding state (a zstd context and a frame buffer). decode_entry() with one of these per
    // thread may run on several threads at once.
    struct Zstd;
    static std::shared_ptr<Zstd> make_decoder();
    // Decodes one zstd entry of this image (entry.nr_pages * 4096 bytes into `dst`).
    Status decode_entry(const PageEntry& e, void* dst, Zstd& z) const;

    // Pages per kind, for stats and `criu show`.
    uint64_t count_pages(uint32_t flag) const;

    PageReader(PageReader&&) noexcept;
    PageReader& operator=(PageReader&&) noexcept;
    ~PageReader();

private:
    PageReader() = default;
    static Expected<PageReader> open_one(const ImageDir& dir, int64_t id);
    // First page of [vaddr, end) that no entry covers, if any.
    std::optional<uint64_t> first_gap(uint64_t vaddr, uint64_t end) const;
    // Index of the entry containing `addr`, if any.
    std::optional<size_t> find(uint64_t addr) const;
    Status read_present(const PageEntry& e, char* dst);
    Status decode_frame(const PageEntry& e, char* dst) { return decode_entry(e, dst, *zstd_); }

    std::string dir_path_;
    std::string pagemap_path_;
    std::string pages_path_;
    images::PagemapHead head_;
    std::vector<PageEntry> entries_;
    UniqueFd pages_fd_;
    uint64_t pages_size_ = 0;
    bool has_parent_entries_ = false;
    std::unique_ptr<PageReader> parent_;

    // Decoding state for read_range(), which also keeps the last frame decoded (it often
    // asks for a few pages of the same frame in a row).
    std::shared_ptr<Zstd> zstd_;
};

}  // namespace criu
