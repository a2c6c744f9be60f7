// Where a dump's pages go: the PageSink interface, and its image-directory backend. The
// other backends live in migrate/ (the remote page server, migrate/net/remote_page_sink.h,
// and the SSD cache); the dumper only ever sees this interface, as CRIU's page transport
// does, so sending pages elsewhere changes nothing in how they are found and read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "criu/core/error.h"
#include "images/page_writer.h"

namespace criu {

class PageSink {
public:
    virtual ~PageSink() = default;
    // The same contract as PageWriter's calls of the same names: increasing addresses,
    // page-aligned, `data` valid only during the call.
    virtual Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false) = 0;
    virtual Status add_zero(uint64_t vaddr, size_t nr_pages) = 0;
    virtual Status add_parent(uint64_t vaddr, size_t nr_pages) = 0;
    // Everything written and the pagemap complete where the pages went; nothing after.
    virtual Status finish(bool sync = false) = 0;
    virtual PageWriterStats stats() const = 0;
};

// pages-<id>.img / pagemap-<id>.img in an image directory (today's PageWriter).
class ImageDirPageSink : public PageSink {
public:
    static Expected<std::unique_ptr<PageSink>> create(const ImageDir& dir, int64_t id, PageWriterOptions opts = {});

    Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false) override {
        return w_.add_pages(vaddr, data, nr_pages, lazy);
    }
    Status add_zero(uint64_t vaddr, size_t nr_pages) override { return w_.add_zero(vaddr, nr_pages); }
    Status add_parent(uint64_t vaddr, size_t nr_pages) override { return w_.add_parent(vaddr, nr_pages); }
    Status finish(bool sync = false) override { return w_.finish(sync); }
    PageWriterStats stats() const override { return w_.stats(); }

    explicit ImageDirPageSink(PageWriter w) : w_(std::move(w)) {}

private:
    PageWriter w_;
};

// How a dump opens the sink for the pages of process `id`; empty means the image directory.
using PageSinkFactory = std::function<Expected<std::unique_ptr<PageSink>>(int64_t id, const PageWriterOptions& opts)>;

}  // namespace criu
