#include "images/zstd_stored.h"

#include <cstring>

namespace criu {
namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // x86-64: little endian, as XXH64 reads
    return v;
}
inline uint32_t load32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline uint64_t round64(uint64_t acc, uint64_t input) { return rotl(acc + input * kP2, 31) * kP1; }
inline uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * kP1 + kP4; }

// Frame layout (RFC 8878 3.1.1): magic, a descriptor byte, the content size, blocks, checksum.
constexpr uint32_t kZstdMagic = 0xFD2FB528u;
// Frame_Content_Size_flag 2 (4-byte size), Single_Segment_flag (no window descriptor: the
// window is the content), Content_Checksum_flag, no dictionary.
constexpr uint8_t kDescriptor = (2u << 6) | (1u << 5) | (1u << 2);
constexpr size_t kHeaderBytes = 4 + 1 + 4;
constexpr size_t kBlockHeaderBytes = 3;
constexpr size_t kMaxBlock = 128u << 10;  // Block_Maximum_Size
constexpr size_t kChecksumBytes = 4;

void put_le(char* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        p[i] = char(uint8_t(v >> (8 * i)));
}

}  // namespace

uint64_t xxh64(const void* data, size_t len, uint64_t seed) {
    const auto* p = static_cast<const uint8_t*>(data);
    const uint8_t* end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
        for (const uint8_t* limit = end - 32; p <= limit; p += 32) {
            v1 = round64(v1, load64(p));
            v2 = round64(v2, load64(p + 8));
            v3 = round64(v3, load64(p + 16));
            v4 = round64(v4, load64(p + 24));
        }
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = merge64(h, v1);
        h = merge64(h, v2);
        h = merge64(h, v3);
        h = merge64(h, v4);
    } else {
        h = seed + kP5;
    }
    h += uint64_t(len);
    for (; p + 8 <= end; p += 8)
        h = rotl(h ^ round64(0, load64(p)), 27) * kP1 + kP4;
    if (p + 4 <= end) {
        h = rotl(h ^ (uint64_t(load32(p)) * kP1), 23) * kP2 + kP3;
        p += 4;
    }
    for (; p < end; ++p)
        h = rotl(h ^ (uint64_t(*p) * kP5), 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
}

size_t zstd_stored_overhead(size_t len) {
    size_t blocks = len == 0 ? 1 : (len + kMaxBlock - 1) / kMaxBlock;
    return kHeaderBytes + blocks * kBlockHeaderBytes + kChecksumBytes;
}

size_t zstd_stored_frame(const void* src, size_t len, char* dst) {
    char* o = dst;
    put_le(o, kZstdMagic, 4);
    o[4] = char(kDescriptor);
    put_le(o + 5, uint64_t(len), 4);
    o += kHeaderBytes;
    const char* s = static_cast<const char*>(src);
    size_t left = len;
    do {
        size_t n = left < kMaxBlock ? left : kMaxBlock;
        bool last = n == left;
        // Block_Header: Last_Block (bit 0), Block_Type 0 = Raw_Block (bits 1-2), Block_Size.
        put_le(o, uint64_t(last) | (uint64_t(n) << 3), 3);
        std::memcpy(o + kBlockHeaderBytes, s, n);
        o += kBlockHeaderBytes + n;
        s += n;
        left -= n;
    } while (left > 0);
    put_le(o, xxh64(src, len) & 0xffffffffu, 4);
    return size_t(o + kChecksumBytes - dst);
}

}  // namespace criu
