// Writes one process's pages: pages-<id>.img (data) and, at finish(), pagemap-<id>.img.
// Ranges must come in increasing address order. Adjacent ranges of the same kind whose
// data is contiguous become one entry.
#pragma once

#include <cstdint>
#include <memory>

#include "criu/core/error.h"
#include "images/image_dir.h"
#include "images/page_store.h"

namespace criu {

struct PageWriterOptions {
    PageCodec codec = images::CODEC_RAW;
    // Level 1: on half-compressible memory the image is ~50% at levels 1 and 3 alike, and
    // level 1 compresses faster (bench/README.md).
    int zstd_level = 1;
    // zstd only: compress on this many worker threads while the caller's thread writes
    // in order; 0 compresses inline. Compression is slower than the disk, so 2 keeps
    // both cores busy.
    unsigned threads = 2;
    // zstd only: pages per frame (each frame is one pagemap entry); at most kMaxFramePages.
    // 256 pages (1 MiB): fewer, larger frames cost less per frame on both sides.
    uint32_t frame_pages = 256;
    // Write the pages file with O_DIRECT (no page cache pollution on a multi-GiB dump);
    // falls back to buffered writes where the filesystem refuses it (tmpfs).
    bool direct_io = true;
    // Only the layout: the pages file gets its header and its full size but no data (a hole
    // where the pages would be), the pagemap is complete. For a sender whose pages go
    // elsewhere (a migration streams them to the destination) and which keeps the set here
    // only as the next increment's parent: that needs the coverage, never the data.
    bool layout_only = false;
};

struct PageWriterStats {
    uint64_t pages_present = 0;
    uint64_t pages_zero = 0;
    uint64_t pages_parent = 0;
    uint64_t bytes_in = 0;        // present pages * page size
    uint64_t bytes_stored = 0;    // page data in the pages file (after compression)
    uint64_t entries = 0;         // pagemap entries after merging
    uint64_t pages_file_size = 0;
    bool direct_io = false;       // whether O_DIRECT was in effect to the end
};

class PageWriter {
public:
    static Expected<PageWriter> create(const ImageDir& dir, int64_t id, PageWriterOptions opts = {});

    // `nr_pages` pages of data for [vaddr, vaddr + nr_pages * 4096). `data` need not be
    // aligned; page-aligned data is written without a copy when O_DIRECT is in effect.
    // With `lazy`, the entry is marked PE_LAZY (post-copy may fetch it on demand).
    Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false);
    // Pages that read as zero: the restorer maps fresh memory.
    Status add_zero(uint64_t vaddr, size_t nr_pages);
    // Pages unchanged since the parent image.
    Status add_parent(uint64_t vaddr, size_t nr_pages);

    // Writes out everything and then the pagemap; no add after this.
    Status finish(bool sync = false);
    const PageWriterStats& stats() const;

    PageWriter(PageWriter&&) noexcept;
    PageWriter& operator=(PageWriter&&) noexcept;
    // Stops the workers; an unfinished writer leaves no pagemap, so the image is not usable.
    ~PageWriter();

    struct Impl;

private:
    explicit PageWriter(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace criu
