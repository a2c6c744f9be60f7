#include "migrate/cache/index_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "images/image_io.h"
#include "migrate/cache/cache_files.h"

namespace criu {
namespace {

constexpr uint32_t kMagic = 0x4c4a4343;  // "CCJL"
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 24;
constexpr size_t kRecordHeadBytes = 8;

void encode_record(ByteWriter& w, const JournalRecord& r) {
    size_t start = w.size();
    w.u8(static_cast<uint8_t>(r.op));
    w.u8(0);
    w.u16(0);  // length, patched below
    w.u32(0);  // crc, patched below
    switch (r.op) {
    case JournalOp::add:
        write_entry(w, r.entry);
        break;
    case JournalOp::clean:
    case JournalOp::drop:
    case JournalOp::corrupt:
        w.key(r.entry.key);
        break;
    case JournalOp::commit:
        w.u32(r.next_segment);
        write_counters(w, r.counters);
        break;
    }
    auto& b = w.bytes();
    uint16_t len = static_cast<uint16_t>(b.size() - start - kRecordHeadBytes);
    std::memcpy(b.data() + start + 2, &len, 2);
    w.patch_u32(start + 4, crc32c(b.data() + start, b.size() - start));
}

// Decodes one record at the reader's position; "" on success, else what is wrong.
std::string decode_record(std::span<const uint8_t> all, size_t at, JournalRecord& r, size_t& used) {
    if (all.size() - at < kRecordHeadBytes)
        return "record header cut short";
    const uint8_t* p = all.data() + at;
    uint16_t len;
    uint32_t crc;
    std::memcpy(&len, p + 2, 2);
    std::memcpy(&crc, p + 4, 4);
    if (all.size() - at - kRecordHeadBytes < len)
        return "record cut short";
    std::vector<uint8_t> copy(p, p + kRecordHeadBytes + len);
    std::memset(copy.data() + 4, 0, 4);
    if (crc32c(copy.data(), copy.size()) != crc)
        return "record checksum mismatch";
    ByteReader rd(std::span<const uint8_t>(p + kRecordHeadBytes, len));
    r = JournalRecord{};
    r.op = static_cast<JournalOp>(p[0]);
    bool ok = false;
    switch (r.op) {
    case JournalOp::add:
        ok = read_entry(rd, r.entry);
        break;
    case JournalOp::clean:
    case JournalOp::drop:
    case JournalOp::corrupt:
        ok = rd.key(r.entry.key);
        break;
    case JournalOp::commit:
        ok = rd.u32(r.next_segment) && read_counters(rd, r.counters);
        break;
    default:
        return fmt::format("unknown record type {}", p[0]);
    }
    if (!ok)
        return "record payload malformed";
    used = kRecordHeadBytes + len;
    return "";
}

}  // namespace

void write_entry(ByteWriter& w, const IndexEntry& e) {
    w.key(e.key);
    w.u32(e.segment);
    w.u64(e.offset);
    w.u32(e.stored_size);
    w.u32(e.raw_size);
    w.u8((e.dirty ? 1 : 0) | (e.corrupt ? 2 : 0));
    w.u64(e.seq);
}

bool read_entry(ByteReader& r, IndexEntry& e) {
    uint8_t flags = 0;
    if (!(r.key(e.key) && r.u32(e.segment) && r.u64(e.offset) && r.u32(e.stored_size) &&
          r.u32(e.raw_size) && r.u8(flags) && r.u64(e.seq)))
        return false;
    e.dirty = flags & 1;
    e.corrupt = flags & 2;
    return flags <= 3;
}

void write_counters(ByteWriter& w, const CacheCounters& c) {
    w.u32(static_cast<uint32_t>(kCounterFields.size()));
    for (const auto& f : kCounterFields)
        w.u64(c.*(f.second));
}

bool read_counters(ByteReader& r, CacheCounters& c) {
    uint32_t n;
    if (!r.u32(n) || n > 4096)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v;
        if (!r.u64(v))
            return false;
        if (i < kCounterFields.size())
            c.*(kCounterFields[i].second) = v;
    }
    return true;
}

std::string IndexJournal::file_name(uint64_t generation) { return fmt::format("journal-{:016x}.log", generation); }

bool IndexJournal::parse_name(const std::string& name, uint64_t& generation) {
    if (name.size() != 28 || name.compare(0, 8, "journal-") != 0 || name.compare(24, 4, ".log") != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 8; i < 24; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | static_cast<uint64_t>(d);
    }
    generation = v;
    return true;
}

Expected<IndexJournal> IndexJournal::create(int dirfd, uint64_t generation) {
    std::string name = file_name(generation);
    UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
    if (!fd)
        return fail_errno("create {}", name);
    ByteWriter w;
    w.u32(kMagic);
    w.u32(kVersion);
    w.u64(generation);
    w.u32(crc32c(w.bytes().data(), 16));
    w.u32(0);
    IndexJournal j(std::move(fd), generation, 0);
    TRY_VOID_CTX(j.write_bytes(w.bytes()), "create {}", name);
    TRY_VOID_CTX(j.sync(), "create {}", name);
    TRY_VOID(fsync_dir(dirfd));
    return j;
}

Expected<IndexJournal> IndexJournal::reopen(int dirfd, uint64_t generation, uint64_t good_bytes) {
    std::string name = file_name(generation);
    UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!fd)
        return fail_errno("reopen {}", name);
    if (::ftruncate(fd.get(), static_cast<off_t>(good_bytes)) != 0)
        return fail_errno("cut the torn tail off {}", name);
    return IndexJournal(std::move(fd), generation, good_bytes);
}

Status IndexJournal::write_bytes(std::span<const uint8_t> bytes) {
    if (broken_)
        return failf(EIO, "{} is unusable after an earlier failed append", file_name(generation_));
    // O_APPEND + one write(): the kernel places the bytes at the end in one piece.
    // A short write (disk full, RLIMIT_FSIZE) leaves part of a record: cut it off.
    ssize_t n;
    do
        n = ::write(fd_.get(), bytes.data(), bytes.size());
    while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(bytes.size())) {
        size_ += bytes.size();
        return {};
    }
    auto err = n < 0 ? fail_errno("append {} bytes to {}", bytes.size(), file_name(generation_))
                     : failf(ENOSPC, "append {} bytes to {}: only {} written", bytes.size(),
                             file_name(generation_), n);
    if (n > 0 && ::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0)
        broken_ = true;
    return err;
}

Status IndexJournal::append(std::span<const JournalRecord> records) {
    ByteWriter w;
    for (const auto& r : records)
        encode_record(w, r);
    return write_bytes(w.bytes());
}

Status IndexJournal::sync() {
    if (::fdatasync(fd_.get()) != 0)
        return fail_errno("fdatasync {}", file_name(generation_));
    return {};
}

Expected<IndexJournal::Replay> IndexJournal::replay(int dirfd, uint64_t generation,
                                                    const std::function<void(const JournalRecord&)>& fn) {
    std::string name = file_name(generation);
    auto data = TRY(read_file_capped(dirfd, name, kMaxBytes));
    Replay rep;
    if (!data) {
        rep.missing = true;
        return rep;
    }
    std::span<const uint8_t> all(*data);
    if (all.size() < kHeaderBytes) {
        rep.problem = "header cut short";
        rep.ignored_bytes = all.size();
        return rep;
    }
    ByteReader hr(all.first(kHeaderBytes));
    uint32_t magic = 0, version = 0, crc = 0;
    uint64_t gen = 0;
    hr.u32(magic);
    hr.u32(version);
    hr.u64(gen);
    hr.u32(crc);
    if (magic != kMagic || crc != crc32c(all.data(), 16))
        return failf(EIO, "{}: not a journal (bad magic or header checksum)", name);
    if (version != kVersion)
        return failf(EIO, "{}: format version {} (this build reads {})", name, version, kVersion);
    if (gen != generation)
        return failf(EIO, "{}: header says generation {}", name, gen);
    size_t at = kHeaderBytes;
    while (at < all.size()) {
        JournalRecord r;
        size_t used = 0;
        std::string why = decode_record(all, at, r, used);
        if (!why.empty()) {
            rep.problem = fmt::format("{} at offset {}", why, at);
            break;
        }
        fn(r);
        rep.records++;
        at += used;
    }
    rep.good_bytes = at;
    rep.ignored_bytes = all.size() - at;
    return rep;
}

}  // namespace criu
