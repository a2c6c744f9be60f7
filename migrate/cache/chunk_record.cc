#include "migrate/cache/chunk_record.h"

#include <zstd.h>

#include <cstdlib>
#include <cstring>

#include "criu/core/assert.h"
#include "images/image_io.h"

namespace criu {
namespace {

constexpr uint32_t kMagic = 0x4b484343;  // "CCHK" little-endian
constexpr uint16_t kVersion = 1;

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint16_t get_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t get_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

// zstd contexts are expensive to create (~100 KiB of tables) and not thread-safe:
// one of each per thread, reused for every chunk.
ZSTD_CCtx* thread_cctx() {
    struct Free {
        void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
    };
    thread_local std::unique_ptr<ZSTD_CCtx, Free> ctx(ZSTD_createCCtx());
    CRIU_ASSERT(ctx != nullptr);
    return ctx.get();
}

ZSTD_DCtx* thread_dctx() {
    struct Free {
        void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
    };
    thread_local std::unique_ptr<ZSTD_DCtx, Free> ctx(ZSTD_createDCtx());
    CRIU_ASSERT(ctx != nullptr);
    return ctx.get();
}

void write_header(const RecordHeader& h, uint8_t* p) {
    std::memset(p, 0, kRecordHeaderBytes);
    put_u32(p + 0, kMagic);
    put_u16(p + 4, kVersion);
    put_u16(p + 6, static_cast<uint16_t>(h.codec));
    std::memcpy(p + 8, h.key.bytes.data(), kChunkKeyBytes);
    put_u32(p + 40, h.raw_size);
    put_u32(p + 44, h.stored_size);
    put_u32(p + 48, h.data_crc);
    put_u32(p + 60, crc32c(p, 60));
}

void pad_record(AlignedBuffer& out, uint32_t stored_size) {
    size_t used = kRecordHeaderBytes + stored_size;
    std::memset(out.data() + used, 0, out.size() - used);
}

}  // namespace

void AlignedBuffer::Free::operator()(uint8_t* p) const { std::free(p); }

void AlignedBuffer::resize(size_t size) {
    if (size > capacity_) {
        size_t cap = (size + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
        void* p = nullptr;
        CRIU_ASSERT(posix_memalign(&p, kRecordAlign, cap) == 0);
        if (data_ && size_ > 0)
            std::memcpy(p, data_.get(), size_);
        data_.reset(static_cast<uint8_t*>(p));
        capacity_ = cap;
    }
    size_ = size;
}

RecordHeader encode_record(const ChunkKey& key, std::span<const uint8_t> raw, int zstd_level, AlignedBuffer& out) {
    CRIU_ASSERT(raw.size() <= kMaxChunkBytes);
    RecordHeader h;
    h.key = key;
    h.raw_size = static_cast<uint32_t>(raw.size());
    size_t bound = ZSTD_compressBound(raw.size());
    out.resize(record_bytes(std::max(bound, raw.size())));
    uint8_t* dst = out.data() + kRecordHeaderBytes;
    size_t n = 0;
    if (zstd_level > 0) {
        n = ZSTD_compressCCtx(thread_cctx(), dst, bound, raw.data(), raw.size(), zstd_level);
        CRIU_ASSERT(!ZSTD_isError(n));  // cannot fail with a bound-sized buffer
    }
    if (zstd_level > 0 && n < raw.size()) {
        h.codec = ChunkCodec::zstd;
        h.stored_size = static_cast<uint32_t>(n);
    } else {
        // Incompressible (or compression off): storing it raw saves the decoder work.
        h.codec = ChunkCodec::raw;
        h.stored_size = h.raw_size;
        std::memcpy(dst, raw.data(), raw.size());
    }
    h.data_crc = crc32c(dst, h.stored_size);
    write_header(h, out.data());
    out.resize(record_bytes(h.stored_size));
    pad_record(out, h.stored_size);
    return h;
}

RecordHeader encode_stored_record(const StoredChunk& c, AlignedBuffer& out) {
    RecordHeader h;
    h.key = c.key;
    h.codec = c.codec;
    h.raw_size = c.raw_size;
    h.stored_size = static_cast<uint32_t>(c.bytes.size());
    out.resize(record_bytes(h.stored_size));
    std::memcpy(out.data() + kRecordHeaderBytes, c.bytes.data(), c.bytes.size());
    h.data_crc = crc32c(c.bytes.data(), c.bytes.size());
    write_header(h, out.data());
    pad_record(out, h.stored_size);
    return h;
}

Expected<RecordHeader> parse_record_header(std::span<const uint8_t> b) {
    if (b.size() < kRecordHeaderBytes)
        return failf(EIO, "record header truncated ({} of {} bytes)", b.size(), kRecordHeaderBytes);
    const uint8_t* p = b.data();
    if (get_u32(p) != kMagic)
        return fail(EIO, "no record here (bad magic)");
    if (get_u32(p + 60) != crc32c(p, 60))
        return fail(EIO, "record header checksum mismatch");
    if (get_u16(p + 4) != kVersion)
        return failf(EIO, "record format version {} (this build reads {})", get_u16(p + 4), kVersion);
    RecordHeader h;
    uint16_t codec = get_u16(p + 6);
    if (codec > 1)
        return failf(EIO, "unknown record codec {}", codec);
    h.codec = static_cast<ChunkCodec>(codec);
    std::memcpy(h.key.bytes.data(), p + 8, kChunkKeyBytes);
    h.raw_size = get_u32(p + 40);
    h.stored_size = get_u32(p + 44);
    h.data_crc = get_u32(p + 48);
    if (h.raw_size == 0 || h.raw_size > kMaxChunkBytes)
        return failf(EIO, "record raw size {} out of range", h.raw_size);
    // zstd never expands by more than its bound; raw records store exactly raw_size.
    if (h.stored_size == 0 || h.stored_size > ZSTD_compressBound(h.raw_size) ||
        (h.codec == ChunkCodec::raw && h.stored_size != h.raw_size))
        return failf(EIO, "record stored size {} impossible for raw size {}", h.stored_size, h.raw_size);
    return h;
}

Status check_stored(const RecordHeader& h, std::span<const uint8_t> stored) {
    if (stored.size() != h.stored_size)
        return failf(EIO, "stored data truncated ({} of {} bytes)", stored.size(), h.stored_size);
    if (crc32c(stored.data(), stored.size()) != h.data_crc)
        return fail(EIO, "stored data checksum mismatch (torn or corrupt)");
    return {};
}

Expected<std::vector<uint8_t>> decode_stored(const RecordHeader& h, std::span<const uint8_t> stored) {
    TRY_VOID(check_stored(h, stored));
    std::vector<uint8_t> raw(h.raw_size);
    if (h.codec == ChunkCodec::raw) {
        std::memcpy(raw.data(), stored.data(), h.raw_size);
        return raw;
    }
    size_t n = ZSTD_decompressDCtx(thread_dctx(), raw.data(), raw.size(), stored.data(), stored.size());
    if (ZSTD_isError(n))
        return failf(EIO, "zstd: {}", ZSTD_getErrorName(n));
    if (n != h.raw_size)
        return failf(EIO, "decoded {} bytes, header says {}", n, h.raw_size);
    return raw;
}

}  // namespace criu
