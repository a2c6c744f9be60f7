#include "migrate/cache/chunk_key.h"

#include <openssl/evp.h>

#include <memory>
#include <vector>

#include "criu/core/assert.h"

namespace criu {
namespace {

// OpenSSL 3 looks the algorithm up in its provider tables on every implicit use
// (EVP_blake2b512()), which costs a few microseconds per call; fetch it once.
const EVP_MD* blake2b() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "BLAKE2B-512", nullptr);
    CRIU_ASSERT(md != nullptr);
    return md;
}

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// One context per thread: puts run on several threads at once.
EVP_MD_CTX* thread_ctx() {
    thread_local MdCtx ctx(EVP_MD_CTX_new());
    CRIU_ASSERT(ctx != nullptr);
    return ctx.get();
}

ChunkKey finish(EVP_MD_CTX* c) {
    uint8_t out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    CRIU_ASSERT(EVP_DigestFinal_ex(c, out, &len) == 1 && len >= kChunkKeyBytes);
    ChunkKey k;
    std::memcpy(k.bytes.data(), out, kChunkKeyBytes);
    return k;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string ChunkKey::hex() const {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s(kChunkKeyBytes * 2, '0');
    for (size_t i = 0; i < kChunkKeyBytes; i++) {
        s[2 * i] = kDigits[bytes[i] >> 4];
        s[2 * i + 1] = kDigits[bytes[i] & 15];
    }
    return s;
}

Expected<ChunkKey> ChunkKey::from_hex(std::string_view s) {
    if (s.size() != kChunkKeyBytes * 2)
        return failf(EINVAL, "chunk key '{}': expected {} hex digits", s, kChunkKeyBytes * 2);
    ChunkKey k;
    for (size_t i = 0; i < kChunkKeyBytes; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return failf(EINVAL, "chunk key '{}': not a hex digit at {}", s, 2 * i);
        k.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return k;
}

ChunkKey hash_chunk(std::span<const uint8_t> data) {
    EVP_MD_CTX* c = thread_ctx();
    CRIU_ASSERT(EVP_DigestInit_ex(c, blake2b(), nullptr) == 1);
    CRIU_ASSERT(EVP_DigestUpdate(c, data.data(), data.size()) == 1);
    return finish(c);
}

bool is_all_zero(std::span<const uint8_t> data) {
    const uint8_t* p = data.data();
    size_t n = data.size();
    // Word at a time; memcpy keeps it legal for unaligned input and compiles to loads.
    while (n >= 32) {
        uint64_t w[4];
        std::memcpy(w, p, sizeof w);
        if ((w[0] | w[1] | w[2] | w[3]) != 0)
            return false;
        p += 32;
        n -= 32;
    }
    while (n > 0) {
        if (*p++ != 0)
            return false;
        n--;
    }
    return true;
}

const ZeroKeys& ZeroKeys::instance() {
    static const ZeroKeys keys;
    return keys;
}

ZeroKeys::ZeroKeys() {
    // Hash the zeros page by page and finalise a copy of the running context after
    // each page: 1 MiB hashed once instead of 128 MiB for 256 separate digests.
    MdCtx running(EVP_MD_CTX_new()), copy(EVP_MD_CTX_new());
    CRIU_ASSERT(running && copy);
    CRIU_ASSERT(EVP_DigestInit_ex(running.get(), blake2b(), nullptr) == 1);
    std::vector<uint8_t> page(kCachePageSize, 0);
    for (size_t i = 0; i < by_pages_.size(); i++) {
        CRIU_ASSERT(EVP_DigestUpdate(running.get(), page.data(), page.size()) == 1);
        CRIU_ASSERT(EVP_MD_CTX_copy_ex(copy.get(), running.get()) == 1);
        by_pages_[i] = finish(copy.get());
        by_key_.emplace(by_pages_[i], static_cast<uint32_t>((i + 1) * kCachePageSize));
    }
}

std::optional<uint32_t> ZeroKeys::size_of(const ChunkKey& key) const {
    auto it = by_key_.find(key);
    if (it == by_key_.end())
        return std::nullopt;
    return it->second;
}

std::optional<ChunkKey> ZeroKeys::key_of(uint32_t size) const {
    if (size == 0 || size % kCachePageSize != 0 || size > kMaxChunkBytes)
        return std::nullopt;
    return by_pages_[size / kCachePageSize - 1];
}

}  // namespace criu
