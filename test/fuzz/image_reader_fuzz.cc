// libFuzzer target: ImageReader on any image type.
// Input: byte 0 picks the image type, the rest is the image file (header included).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "images/image_io.h"
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/inventory.pb.h"
#include "proto/mm.pb.h"
#include "proto/pagemap.pb.h"
#include "proto/pstree.pb.h"
#include "proto/stats.pb.h"

namespace {

const google::protobuf::Message& prototype(criu::ImageType t) {
    using criu::ImageType;
    namespace im = criu::images;
    switch (t) {
    case ImageType::Inventory: return im::Inventory::default_instance();
    case ImageType::Pstree: return im::PstreeEntry::default_instance();
    case ImageType::Core: return im::TaskCore::default_instance();
    case ImageType::Mm: return im::MmInfo::default_instance();
    case ImageType::Pagemap: return im::PagemapEntry::default_instance();
    case ImageType::Files: return im::FileEntry::default_instance();
    case ImageType::Fdinfo: return im::FdEntry::default_instance();
    case ImageType::PipeData: return im::PipeData::default_instance();
    case ImageType::Fs: return im::FsInfo::default_instance();
    case ImageType::DumpStats: return im::DumpStats::default_instance();
    case ImageType::RestoreStats: return im::RestoreStats::default_instance();
    }
    return im::Inventory::default_instance();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Protobuf logs parse failures of invalid UTF-8 to stderr; keep the fuzzer's output readable.
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1)
        return 0;
    const auto& types = criu::all_image_types();
    auto type = types[data[0] % types.size()].type;
    auto r = criu::ImageReader::from_buffer(std::string(reinterpret_cast<const char*>(data + 1), size - 1), "fuzz",
                                            type);
    if (!r) {
        if (r.error().message().find("fuzz") == std::string::npos)
            __builtin_trap();  // every error names the image
        return 0;
    }
    for (int n = 0; n < 1000; n++) {
        std::unique_ptr<google::protobuf::Message> msg(
            type == criu::ImageType::Pagemap && n == 0 ? criu::images::PagemapHead::default_instance().New()
                                                       : prototype(type).New());
        auto got = r->read(*msg);
        if (!got) {
            if (got.error().message().find("fuzz: record ") == std::string::npos)
                __builtin_trap();  // a record error names the record
            break;
        }
        if (!*got)
            break;
        // Re-serializing what was accepted must work.
        std::string again;
        if (!msg->SerializeToString(&again))
            __builtin_trap();
    }
    return 0;
}
