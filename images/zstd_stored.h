// Stored zstd frames: data that does not compress, written as a standard zstd frame of raw
// blocks (RFC 8878 section 3.1), so that any zstd decoder reads it back (as a copy) and the
// image format does not change. Building one costs a copy and a hash instead of a
// compression attempt: zstd level 1 spends ~1 s per GiB of random data only to find that
// nothing matches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace criu {

// XXH64 (the hash zstd's content checksum uses: its low 32 bits).
uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);

// Writes to `dst` (room for len + zstd_stored_overhead(len) bytes) one zstd frame holding
// `len` bytes of `src` in raw blocks, with the frame content size and the content checksum;
// returns its size. `len` must be below 4 GiB.
size_t zstd_stored_frame(const void* src, size_t len, char* dst);

// Bytes zstd_stored_frame adds to `len` bytes of content.
size_t zstd_stored_overhead(size_t len);

}  // namespace criu
