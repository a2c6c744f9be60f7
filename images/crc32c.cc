// CRC-32C (Castagnoli), the checksum of every image record. The SSE4.2 crc32
// instruction computes exactly this polynomial, so x86-64 hosts from 2008 on get
// it at several GB/s; the table version keeps other CPUs (and valgrind) working.
#include <cstring>

#include <nmmintrin.h>

#include "images/image_io.h"

namespace criu {
namespace {

// Reflected form of 0x1EDC6F41.
constexpr uint32_t kPoly = 0x82F63B78u;

struct Table {
    uint32_t t[256];
};

constexpr Table make_table() {
    Table tab{};
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
        tab.t[i] = c;
    }
    return tab;
}

constexpr Table kTable = make_table();

}  // namespace

namespace detail {

uint32_t crc32c_table(const void* data, size_t len, uint32_t seed) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~seed;
    for (size_t i = 0; i < len; i++)
        c = kTable.t[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

// Compiled for SSE4.2 only here, so the rest of the binary still runs on any x86-64;
// only called after the runtime check below.
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const void* data, size_t len, uint32_t seed) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t c = ~seed;
    while (len >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);  // unaligned-safe
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    auto c32 = static_cast<uint32_t>(c);
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

bool crc32c_hw_available() {
    static const bool ok = __builtin_cpu_supports("sse4.2");
    return ok;
}

}  // namespace detail

uint32_t crc32c(const void* data, size_t len, uint32_t seed) {
    if (detail::crc32c_hw_available())
        return detail::crc32c_hw(data, len, seed);
    return detail::crc32c_table(data, len, seed);
}

}  // namespace criu
