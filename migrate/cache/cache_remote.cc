#include "migrate/cache/cache_remote.h"

namespace criu {

Expected<std::vector<bool>> CacheRemote::have(std::span<const ChunkKey> keys) {
    have_calls_++;
    keys_asked_ += keys.size();
    std::vector<bool> out(keys.size());
    const ZeroKeys& zeros = ZeroKeys::instance();
    for (size_t i = 0; i < keys.size(); i++) {
        auto inf = store_.info(keys[i]);
        out[i] = zeros.size_of(keys[i]).has_value() || (inf && !inf->corrupt);
    }
    return out;
}

Status CacheRemote::put(std::span<const StoredChunk> chunks) {
    put_calls_++;
    for (const auto& c : chunks) {
        TRY_VOID(store_.put_stored(c));
        chunks_++;
        bytes_ += c.bytes.size();
    }
    return store_.commit();
}

CacheRemote::Traffic CacheRemote::traffic() const {
    return Traffic{have_calls_.load(), keys_asked_.load(), put_calls_.load(), chunks_.load(), bytes_.load()};
}

}  // namespace criu
