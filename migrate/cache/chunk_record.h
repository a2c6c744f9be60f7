// The chunk record: how one chunk sits in a segment file, and how it crosses to the
// remote side (the same stored bytes, so nothing is compressed twice).
//
//   offset  size  field
//        0     4  magic "CCHK"
//        4     2  format version (1)
//        6     2  codec: 0 raw, 1 zstd
//        8    32  key (chunk_key.h)
//       40     4  raw size (bytes after decoding)
//       44     4  stored size (bytes that follow the header)
//       48     4  crc32c of the stored bytes
//       52     8  reserved, zero
//       60     4  crc32c of bytes 0..59
//       64     -  stored bytes, then zeros up to a multiple of 4096
//
// Records start on 4096-byte boundaries so that segment writes and reads can use
// O_DIRECT, and so that a recovery scan can look for headers at every 4096th byte.
// A record whose header or data checksum does not match, or whose data does not
// decode to exactly the raw size, is torn or corrupt: it is never served.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "criu/core/error.h"
#include "migrate/cache/chunk_key.h"

namespace criu {

enum class ChunkCodec : uint16_t { raw = 0, zstd = 1 };

inline constexpr uint32_t kRecordHeaderBytes = 64;
inline constexpr uint32_t kRecordAlign = 4096;

// Bytes a record with `stored_size` bytes of data occupies in a segment.
inline uint64_t record_bytes(uint64_t stored_size) {
    return (kRecordHeaderBytes + stored_size + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
}
inline constexpr uint64_t kMaxRecordBytes = (kRecordHeaderBytes + kMaxChunkBytes + kRecordAlign - 1) /
                                            kRecordAlign * kRecordAlign;

struct RecordHeader {
    ChunkKey key;
    ChunkCodec codec = ChunkCodec::raw;
    uint32_t raw_size = 0;
    uint32_t stored_size = 0;
    uint32_t data_crc = 0;
};

// A chunk in its stored form, as the remote receives it.
struct StoredChunk {
    ChunkKey key;
    ChunkCodec codec = ChunkCodec::raw;
    uint32_t raw_size = 0;
    std::span<const uint8_t> bytes;
};

// A 4096-aligned, growable byte buffer for O_DIRECT I/O.
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t size) { resize(size); }
    // Keeps the first min(old, new) bytes; newly exposed bytes are unspecified.
    void resize(size_t size);
    uint8_t* data() { return data_.get(); }
    const uint8_t* data() const { return data_.get(); }
    size_t size() const { return size_; }
    std::span<uint8_t> span() { return {data(), size_}; }

private:
    struct Free {
        void operator()(uint8_t* p) const;
    };
    std::unique_ptr<uint8_t, Free> data_;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

// Builds a whole record (header, stored bytes, zero padding) in `out` from raw chunk
// data: zstd at `zstd_level`, or raw when that does not make it smaller or the level
// is 0. `out` is resized to the record size. Returns the header written.
RecordHeader encode_record(const ChunkKey& key, std::span<const uint8_t> raw, int zstd_level, AlignedBuffer& out);

// Same from a chunk already in its stored form (received from the other side).
RecordHeader encode_stored_record(const StoredChunk& chunk, AlignedBuffer& out);

// Validates a header: magic, version, header checksum, codec and size limits.
Expected<RecordHeader> parse_record_header(std::span<const uint8_t> bytes);

// Checks the stored bytes against the header's checksum (nothing is decoded).
Status check_stored(const RecordHeader& h, std::span<const uint8_t> stored);

// Checks and decodes stored bytes into exactly h.raw_size bytes.
Expected<std::vector<uint8_t>> decode_stored(const RecordHeader& h, std::span<const uint8_t> stored);

}  // namespace criu
