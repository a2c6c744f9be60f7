#include "restore/restorer_blob.h"

extern "C" const uint8_t criu_restorer_blob_start[];
extern "C" const uint8_t criu_restorer_blob_end[];

namespace criu {

std::span<const uint8_t> restorer_blob_code() {
    return {criu_restorer_blob_start, size_t(criu_restorer_blob_end - criu_restorer_blob_start)};
}

}  // namespace criu
