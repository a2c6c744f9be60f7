#include "migrate/cache/index_checkpoint.h"

#include "images/image_io.h"
#include "migrate/cache/cache_files.h"

namespace criu {
namespace {

constexpr uint32_t kMagic = 0x58494343;  // "CCIX"
constexpr uint32_t kVersion = 1;
// An entry takes 61 bytes; 16 GiB covers ~280 M chunks, far beyond any real cache.
constexpr uint64_t kMaxBytes = 16ull << 30;
constexpr size_t kEntryBytes = kChunkKeyBytes + 4 + 8 + 4 + 4 + 1 + 8;

}  // namespace

std::vector<uint8_t> IndexCheckpoint::encode() const {
    ByteWriter w;
    w.bytes().reserve(128 + entries.size() * kEntryBytes);
    w.u32(kMagic);
    w.u32(kVersion);
    w.u64(generation);
    w.u32(next_segment);
    w.u8(static_cast<uint8_t>(policy));
    w.u64(cache_size);
    w.u64(segment_bytes);
    w.u64(next_seq);
    write_counters(w, counters);
    w.u64(entries.size());
    for (const auto& e : entries)
        write_entry(w, e);
    w.u32(crc32c(w.bytes().data(), w.size()));
    return std::move(w.bytes());
}

Expected<IndexCheckpoint> IndexCheckpoint::decode(std::span<const uint8_t> b) {
    if (b.size() < 8)
        return fail(EIO, "checkpoint cut short");
    uint32_t crc;
    std::memcpy(&crc, b.data() + b.size() - 4, 4);
    if (crc != crc32c(b.data(), b.size() - 4))
        return fail(EIO, "checkpoint checksum mismatch");
    ByteReader r(b.first(b.size() - 4));
    IndexCheckpoint c;
    uint32_t magic = 0, version = 0;
    uint8_t policy = 0;
    uint64_t count = 0;
    if (!(r.u32(magic) && r.u32(version)) || magic != kMagic)
        return fail(EIO, "not an index checkpoint (bad magic)");
    if (version != kVersion)
        return failf(EIO, "checkpoint format version {} (this build reads {})", version, kVersion);
    if (!(r.u64(c.generation) && r.u32(c.next_segment) && r.u8(policy) && r.u64(c.cache_size) &&
          r.u64(c.segment_bytes) && r.u64(c.next_seq) && read_counters(r, c.counters) && r.u64(count)))
        return fail(EIO, "checkpoint header malformed");
    if (policy > 1)
        return failf(EIO, "checkpoint names unknown eviction policy {}", policy);
    c.policy = static_cast<EvictionPolicy>(policy);
    // Check the count against what is there before reserving memory for it.
    if (count != r.left() / kEntryBytes || r.left() % kEntryBytes != 0)
        return failf(EIO, "checkpoint says {} entries but holds {} bytes of them", count, r.left());
    c.entries.resize(count);
    for (auto& e : c.entries)
        if (!read_entry(r, e))
            return fail(EIO, "checkpoint entry malformed");
    return c;
}

Status IndexCheckpoint::write(int dirfd) const {
    std::vector<uint8_t> bytes = encode();
    return with_context(write_file_atomic(dirfd, kFileName, bytes), "write index checkpoint");
}

Expected<std::optional<IndexCheckpoint>> IndexCheckpoint::read(int dirfd) {
    auto bytes = TRY(read_file_capped(dirfd, kFileName, kMaxBytes));
    if (!bytes)
        return std::optional<IndexCheckpoint>();
    IndexCheckpoint c = TRY_CTX(decode(*bytes), "{}", kFileName);
    return std::optional<IndexCheckpoint>(std::move(c));
}

}  // namespace criu
