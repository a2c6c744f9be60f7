#include "images/page_sink.h"

namespace criu {

Expected<std::unique_ptr<PageSink>> ImageDirPageSink::create(const ImageDir& dir, int64_t id, PageWriterOptions opts) {
    PageWriter w = TRY(PageWriter::create(dir, id, opts));
    return std::unique_ptr<PageSink>(std::make_unique<ImageDirPageSink>(std::move(w)));
}

}  // namespace criu
