// Little-endian encoding helpers for the cache's own files (journal, checkpoint,
// snapshot manifests). The reader is bounds-checked: every file is untrusted input
// after a crash or a bad disk, so running off the end is a reported error, never a read
// past the buffer.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "migrate/cache/chunk_key.h"

namespace criu {

class ByteWriter {
public:
    void u8(uint8_t v) { buf_.push_back(v); }
    void u16(uint16_t v) { raw(&v, 2); }
    void u32(uint32_t v) { raw(&v, 4); }
    void u64(uint64_t v) { raw(&v, 8); }
    void key(const ChunkKey& k) { raw(k.bytes.data(), k.bytes.size()); }
    void str(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        raw(s.data(), s.size());
    }
    void raw(const void* p, size_t n) {
        auto b = static_cast<const uint8_t*>(p);
        buf_.insert(buf_.end(), b, b + n);
    }
    // Overwrites 4 bytes already written (a length or checksum filled in afterwards).
    void patch_u32(size_t at, uint32_t v) { std::memcpy(buf_.data() + at, &v, 4); }

    size_t size() const { return buf_.size(); }
    const std::vector<uint8_t>& bytes() const { return buf_; }
    std::vector<uint8_t>& bytes() { return buf_; }

private:
    std::vector<uint8_t> buf_;
};

class ByteReader {
public:
    explicit ByteReader(std::span<const uint8_t> b) : b_(b) {}

    // Each getter returns false (and leaves `v` alone) once the input is exhausted.
    bool u8(uint8_t& v) { return raw(&v, 1); }
    bool u16(uint16_t& v) { return raw(&v, 2); }
    bool u32(uint32_t& v) { return raw(&v, 4); }
    bool u64(uint64_t& v) { return raw(&v, 8); }
    bool key(ChunkKey& k) { return raw(k.bytes.data(), k.bytes.size()); }
    bool str(std::string& s, size_t max_len) {
        uint32_t n;
        if (!u32(n) || n > max_len || n > left())
            return false;
        s.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return true;
    }
    bool raw(void* p, size_t n) {
        if (n > left())
            return false;
        std::memcpy(p, b_.data() + pos_, n);
        pos_ += n;
        return true;
    }
    size_t left() const { return b_.size() - pos_; }
    size_t pos() const { return pos_; }

private:
    std::span<const uint8_t> b_;
    size_t pos_ = 0;
};

}  // namespace criu
