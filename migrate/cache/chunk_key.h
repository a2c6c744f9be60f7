// Content keys of cache chunks and the all-zero chunk table.
//
// A key is the first 256 bits of BLAKE2b-512 of the chunk's raw bytes. The remote side
// trusts keys for deduplication ("I already have K, don't send it"), so the hash has to
// be collision resistant against an adversary, not just well distributed: a fast
// non-cryptographic hash (xxHash, crc) would let a crafted page make the remote restore
// someone else's data. Among what OpenSSL 3.0 offers, BLAKE2b is the fastest on this
// machine's EPYC, which has no SHA extensions (measured here with 64 KiB inputs:
// BLAKE2b-512 1.2-1.4x SHA-512/256 and 1.7-2x SHA-256). OpenSSL 3.0 has no output-length parameter for
// BLAKE2b, so the 512-bit digest is truncated; a truncated collision-resistant hash keeps
// 128-bit collision resistance. Both ends compute keys with hash_chunk() from this file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "criu/core/error.h"

namespace criu {

inline constexpr size_t kChunkKeyBytes = 32;
inline constexpr uint32_t kCachePageSize = 4096;
// Largest chunk the cache accepts. Callers chunk runs of pages; 64 KiB is the
// recommended size (dedup granularity vs per-chunk overhead, see chunk_cache.h).
inline constexpr uint32_t kMaxChunkBytes = 1u << 20;

struct ChunkKey {
    std::array<uint8_t, kChunkKeyBytes> bytes{};

    std::string hex() const;
    // First 16 hex digits: enough to name a chunk in a message.
    std::string short_hex() const { return hex().substr(0, 16); }
    static Expected<ChunkKey> from_hex(std::string_view s);

    auto operator<=>(const ChunkKey&) const = default;
};

struct ChunkKeyHash {
    // The key is already uniformly distributed: any 8 bytes of it make a good hash.
    size_t operator()(const ChunkKey& k) const {
        uint64_t v;
        std::memcpy(&v, k.bytes.data(), sizeof v);
        return static_cast<size_t>(v);
    }
};

// The content key of `data` (see the top of this file for the exact definition).
ChunkKey hash_chunk(std::span<const uint8_t> data);

// True when every byte is zero; stops at the first non-zero word.
bool is_all_zero(std::span<const uint8_t> data);

// Keys of all-zero chunks of every multiple of the page size up to kMaxChunkBytes.
// Zero chunks are never stored or sent: both sides recognise their keys. Built once
// (hashing 1 MiB of zeros incrementally, ~2 ms) and immutable afterwards, so lookups
// need no lock.
class ZeroKeys {
public:
    static const ZeroKeys& instance();

    // Raw size of the zero chunk with this key, if it is one.
    std::optional<uint32_t> size_of(const ChunkKey& key) const;
    // Key of the zero chunk of `size` bytes; `size` must be a page multiple in range.
    std::optional<ChunkKey> key_of(uint32_t size) const;

private:
    ZeroKeys();
    std::unordered_map<ChunkKey, uint32_t, ChunkKeyHash> by_key_;
    std::array<ChunkKey, kMaxChunkBytes / kCachePageSize> by_pages_{};
};

}  // namespace criu
