// The cache's on-disk formats taken alone: chunk keys, chunk records, the journal, the
// checkpoint and snapshot manifests, including torn and hostile input.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "images/image_io.h"
#include "migrate/cache/chunk_key.h"
#include "migrate/cache/chunk_record.h"
#include "migrate/cache/index_checkpoint.h"
#include "migrate/cache/index_journal.h"
#include "migrate/cache/snapshot_manifest.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;

TEST_CASE("chunk keys and the zero-chunk table", "[cache][format]") {
    auto a = chunk_data(1), b = chunk_data(2);
    CHECK(hash_chunk(a) == hash_chunk(a));
    CHECK(hash_chunk(a) != hash_chunk(b));
    ChunkKey k = hash_chunk(a);
    auto back = ChunkKey::from_hex(k.hex());
    REQUIRE(back);
    CHECK(*back == k);
    CHECK_FALSE(ChunkKey::from_hex("xyz"));
    CHECK_FALSE(ChunkKey::from_hex(std::string(64, 'g')));

    const ZeroKeys& z = ZeroKeys::instance();
    for (uint32_t size : {4096u, 65536u, kMaxChunkBytes}) {
        std::vector<uint8_t> zeros(size, 0);
        CHECK(is_all_zero(zeros));
        auto key = z.key_of(size);
        REQUIRE(key);
        // The table is built incrementally: it must agree with a direct hash.
        CHECK(*key == hash_chunk(zeros));
        CHECK(z.size_of(*key) == size);
    }
    CHECK_FALSE(z.key_of(100));
    CHECK_FALSE(z.size_of(k));
    std::vector<uint8_t> almost(65536, 0);
    almost[65535] = 1;
    CHECK_FALSE(is_all_zero(almost));
}

TEST_CASE("chunk records round trip and refuse every corruption", "[cache][format]") {
    for (bool compressible : {false, true}) {
        auto raw = chunk_data(7, 65536, compressible);
        ChunkKey key = hash_chunk(raw);
        AlignedBuffer rec;
        RecordHeader h = encode_record(key, raw, 1, rec);
        CHECK(rec.size() % kRecordAlign == 0);
        CHECK(h.codec == (compressible ? ChunkCodec::zstd : ChunkCodec::raw));
        if (compressible)
            CHECK(h.stored_size < raw.size() * 2 / 3);
        auto ph = parse_record_header(rec.span());
        REQUIRE(ph);
        CHECK(ph->key == key);
        auto stored = std::span<const uint8_t>(rec.data() + kRecordHeaderBytes, ph->stored_size);
        auto out = decode_stored(*ph, stored);
        REQUIRE(out);
        CHECK(*out == raw);

        // A flipped byte anywhere in the header or the data is caught.
        for (size_t off : {size_t{0}, size_t{8}, size_t{44}, size_t{60}, size_t{kRecordHeaderBytes + 5},
                           size_t{kRecordHeaderBytes + h.stored_size - 1}}) {
            AlignedBuffer bad(rec.size());
            std::memcpy(bad.data(), rec.data(), rec.size());
            bad.data()[off] ^= 0x40;
            auto bh = parse_record_header(bad.span());
            if (!bh)
                continue;
            auto r = decode_stored(*bh, std::span<const uint8_t>(bad.data() + kRecordHeaderBytes, bh->stored_size));
            CHECK_FALSE(r);
        }
        // Torn: the data cut short, or all zeros (a hole left by a crash).
        CHECK_FALSE(decode_stored(*ph, stored.first(stored.size() / 2)));
        std::vector<uint8_t> hole(kRecordAlign, 0);
        CHECK_FALSE(parse_record_header(hole));
    }
}

TEST_CASE("chunk records with hostile sizes are refused", "[cache][format]") {
    auto raw = chunk_data(3, 8192);
    AlignedBuffer rec;
    encode_record(hash_chunk(raw), raw, 0, rec);
    auto patch = [&](size_t at, uint32_t v) {
        AlignedBuffer bad(rec.size());
        std::memcpy(bad.data(), rec.data(), rec.size());
        std::memcpy(bad.data() + at, &v, 4);
        // Re-seal the header checksum so that only the size checks can refuse it.
        uint32_t crc = crc32c(bad.data(), 60);
        std::memcpy(bad.data() + 60, &crc, 4);
        return parse_record_header(bad.span());
    };
    CHECK_FALSE(patch(40, 0));                    // raw size 0
    CHECK_FALSE(patch(40, kMaxChunkBytes + 1));   // raw size too large
    CHECK_FALSE(patch(44, 0xffffffff));           // stored size absurd
    CHECK_FALSE(patch(44, 100));                  // raw codec with stored != raw
    CHECK(patch(52, 0));                          // reserved field: still fine
}

TEST_CASE("journal replay stops at a torn tail and keeps everything before", "[cache][format]") {
    CacheTempDir d;
    int dirfd = ::open(d.path().c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(dirfd >= 0);
    auto j = IndexJournal::create(dirfd, 5);
    REQUIRE(j);
    std::vector<JournalRecord> recs;
    for (int i = 0; i < 10; i++) {
        JournalRecord r;
        r.op = i % 3 == 0 ? JournalOp::add : i % 3 == 1 ? JournalOp::clean : JournalOp::commit;
        r.entry.key = hash_chunk(chunk_data(i, 4096));
        r.entry.segment = 3;
        r.entry.offset = 4096u * i;
        r.entry.stored_size = 100;
        r.entry.raw_size = 4096;
        r.entry.dirty = true;
        r.entry.seq = 42 + i;
        r.counters.writes = 1000 + i;
        r.next_segment = 9;
        recs.push_back(r);
    }
    REQUIRE(j->append(recs));
    uint64_t full = j->size();
    auto path = d.sub(IndexJournal::file_name(5));

    std::vector<JournalRecord> seen;
    auto rep = IndexJournal::replay(dirfd, 5, [&](const JournalRecord& r) { seen.push_back(r); });
    REQUIRE(rep);
    CHECK(rep->records == 10);
    CHECK(rep->ignored_bytes == 0);
    REQUIRE(seen.size() == 10);
    CHECK(seen[0].entry.key == recs[0].entry.key);
    CHECK(seen[0].entry.offset == 0);
    CHECK(seen[0].entry.seq == 42);
    CHECK(seen[2].counters.writes == 1002);
    CHECK(seen[2].next_segment == 9);

    // Cut the last record in half: nine survive.
    REQUIRE(::truncate(path.c_str(), static_cast<off_t>(full - 10)) == 0);
    seen.clear();
    rep = IndexJournal::replay(dirfd, 5, [&](const JournalRecord& r) { seen.push_back(r); });
    REQUIRE(rep);
    CHECK(rep->records == 9);
    CHECK(rep->ignored_bytes > 0);
    CHECK_FALSE(rep->problem.empty());

    // Garbage in the middle: replay stops there.
    criu::test::flip_byte(path, 24 + 20);
    seen.clear();
    rep = IndexJournal::replay(dirfd, 5, [&](const JournalRecord& r) { seen.push_back(r); });
    REQUIRE(rep);
    CHECK(rep->records == 0);

    // Another generation's journal is not this one.
    CHECK_FALSE(IndexJournal::replay(dirfd, 6, [](const JournalRecord&) {})->records);
    CHECK(IndexJournal::replay(dirfd, 6, [](const JournalRecord&) {})->missing);
    ::close(dirfd);
}

TEST_CASE("checkpoint round trip and checks", "[cache][format]") {
    IndexCheckpoint c;
    c.generation = 12;
    c.next_segment = 77;
    c.policy = EvictionPolicy::fifo;
    c.cache_size = 1 << 30;
    c.segment_bytes = 64 << 20;
    c.next_seq = 5000;
    c.counters.reads = 11;
    c.counters.recoveries = 3;
    for (int i = 0; i < 100; i++) {
        IndexEntry e;
        e.key = hash_chunk(chunk_data(i, 4096));
        e.segment = static_cast<uint32_t>(i / 10 + 1);
        e.offset = 8192u * i;
        e.stored_size = 1000 + i;
        e.raw_size = 4096;
        e.dirty = i % 2;
        e.seq = i;
        c.entries.push_back(e);
    }
    auto bytes = c.encode();
    auto back = IndexCheckpoint::decode(bytes);
    REQUIRE(back);
    CHECK(back->generation == 12);
    CHECK(back->next_segment == 77);
    CHECK(back->policy == EvictionPolicy::fifo);
    CHECK(back->counters.reads == 11);
    CHECK(back->counters.recoveries == 3);
    REQUIRE(back->entries.size() == 100);
    CHECK(back->entries[99].key == c.entries[99].key);
    CHECK(back->entries[99].dirty == c.entries[99].dirty);

    for (size_t off : {size_t{0}, size_t{30}, bytes.size() / 2, bytes.size() - 1}) {
        auto bad = bytes;
        bad[off] ^= 1;
        CHECK_FALSE(IndexCheckpoint::decode(bad));
    }
    auto cut = bytes;
    cut.resize(bytes.size() - 30);
    CHECK_FALSE(IndexCheckpoint::decode(cut));
    CHECK_FALSE(IndexCheckpoint::decode(std::vector<uint8_t>{}));
}

TEST_CASE("snapshot manifest names and round trip and corruption", "[cache][format]") {
    CHECK(SnapshotManifest::check_name("dump-3.iter_1"));
    CHECK_FALSE(SnapshotManifest::check_name(""));
    CHECK_FALSE(SnapshotManifest::check_name("../etc"));
    CHECK_FALSE(SnapshotManifest::check_name(".hidden"));
    CHECK_FALSE(SnapshotManifest::check_name("a/b"));
    CHECK_FALSE(SnapshotManifest::check_name(std::string(300, 'a')));

    CacheTempDir d;
    int fd = ::open(d.path().c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    SnapshotManifest m;
    m.name = "pre-dump-1";
    for (int i = 0; i < 50; i++)
        m.keys.push_back(hash_chunk(chunk_data(i, 4096)));
    REQUIRE(m.write(fd));
    auto back = SnapshotManifest::read(fd, "pre-dump-1.snap");
    REQUIRE(back);
    CHECK(back->keys == m.keys);
    auto names = SnapshotManifest::list(fd);
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{"pre-dump-1.snap"});
    criu::test::flip_byte(d.sub("pre-dump-1.snap"), 40);
    CHECK_FALSE(SnapshotManifest::read(fd, "pre-dump-1.snap"));
    REQUIRE(SnapshotManifest::remove(fd, "pre-dump-1"));
    CHECK(SnapshotManifest::list(fd)->empty());
    ::close(fd);
}
