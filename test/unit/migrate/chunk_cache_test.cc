// ChunkCache basics: round trips, deduplication, zero chunks, persistence, snapshots,
// concurrency, corruption.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/segment_file.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;

namespace {

std::unique_ptr<ChunkCache> open_cache(const std::string& dir, ChunkCacheOptions o = {}) {
    if (o.remote == nullptr && o.mode == CacheMode::writeback)
        o.mode = CacheMode::standalone;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        FAIL(c.error().str());
    return std::move(*c);
}

ChunkKey put_ok(ChunkCache& c, const std::vector<uint8_t>& data, std::string_view snap = {}) {
    auto k = c.put(data, snap);
    if (!k)
        FAIL(k.error().str());
    return *k;
}

}  // namespace

TEST_CASE("put/get round trip for every size and content kind", "[cache]") {
    CacheTempDir d;
    auto c = open_cache(d.path());
    std::vector<std::pair<ChunkKey, std::vector<uint8_t>>> all;
    uint64_t seed = 1;
    for (size_t size : {size_t{1}, size_t{100}, size_t{4096}, size_t{5000}, size_t{65536}, size_t{kMaxChunkBytes}})
        for (bool comp : {false, true}) {
            auto data = chunk_data(seed++, size, comp);
            all.emplace_back(put_ok(*c, data), data);
        }
    for (const auto& [k, data] : all) {
        auto got = c->get(k);
        REQUIRE(got);
        CHECK(*got == data);
        CHECK(k == hash_chunk(data));
    }
    CacheStats s = c->stats();
    CHECK(s.chunks == all.size());
    CHECK(s.counters.read_hits == all.size());
    CHECK(s.counters.write_misses == all.size());
    // Half the data compresses about 2:1 and zstd refuses to grow the rest.
    CHECK(s.compression_ratio() > 1.1);
    CHECK(c->verify().ok());

    auto missing = c->get(hash_chunk(chunk_data(999)));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().err() == ENOENT);
    CHECK(c->stats().counters.read_misses == 1);
    CHECK_FALSE(c->put(std::vector<uint8_t>{}));
    CHECK_FALSE(c->put(std::vector<uint8_t>(kMaxChunkBytes + 1, 1)));
}

TEST_CASE("identical chunks are stored once and zero chunks never", "[cache]") {
    CacheTempDir d;
    auto c = open_cache(d.path());
    auto a = chunk_data(1);
    ChunkKey k1 = put_ok(*c, a);
    ChunkKey k2 = put_ok(*c, a);
    ChunkKey k3 = put_ok(*c, a);
    CHECK(k1 == k2);
    CHECK(k2 == k3);
    std::vector<uint8_t> zeros(65536, 0), small_zeros(4096, 0), odd_zeros(1000, 0);
    ChunkKey z = put_ok(*c, zeros);
    ChunkKey zs = put_ok(*c, small_zeros);
    put_ok(*c, odd_zeros);  // not a page multiple: an ordinary (tiny) chunk

    CacheStats s = c->stats();
    CHECK(s.chunks == 2);
    CHECK(s.counters.writes == 6);
    CHECK(s.counters.write_hits == 2);
    CHECK(s.counters.dedup_local_bytes == 2 * a.size());
    CHECK(s.counters.zero_chunks == 2);
    CHECK(s.counters.zero_bytes == zeros.size() + small_zeros.size());
    CHECK(s.dedup_bytes() == 2 * a.size() + zeros.size() + small_zeros.size());
    CHECK_FALSE(c->contains(z));
    CHECK(*c->get(z) == zeros);
    CHECK(*c->get(zs) == small_zeros);
    CHECK(z != zs);
}

TEST_CASE("contents and counters and settings survive a clean restart", "[cache]") {
    CacheTempDir d;
    std::vector<ChunkKey> keys;
    {
        ChunkCacheOptions o;
        o.cache_size = 8 << 20;
        o.policy = EvictionPolicy::fifo;
        auto c = open_cache(d.path(), o);
        for (int i = 0; i < 20; i++)
            keys.push_back(put_ok(*c, chunk_data(i, 16384, i % 2)));
        REQUIRE(c->get(keys[3]));
        REQUIRE(c->close());
    }
    auto c = open_cache(d.path());
    CHECK(c->recovery().clean_shutdown);
    CHECK(c->recovery().dropped == 0);
    CacheStats s = c->stats();
    CHECK(s.chunks == 20);
    CHECK(s.counters.writes == 20);
    CHECK(s.counters.read_hits == 1);
    CHECK(s.counters.recoveries == 0);
    CHECK(s.cache_size == (8u << 20));
    CHECK(s.policy == EvictionPolicy::fifo);
    for (int i = 0; i < 20; i++)
        CHECK(*c->get(keys[i]) == chunk_data(i, 16384, i % 2));
    CHECK(c->verify().ok());
}

TEST_CASE("one writer per directory and read-only opens next to it", "[cache]") {
    CacheTempDir d;
    auto c = open_cache(d.path());
    ChunkKey k = put_ok(*c, chunk_data(5));
    REQUIRE(c->commit());
    auto second = ChunkCache::open(d.path(), {});
    REQUIRE_FALSE(second);
    CHECK(second.error().err() == EBUSY);
    CHECK_THAT(second.error().str(), Catch::Contains("in use by pid"));

    ChunkCacheOptions ro;
    ro.read_only = true;
    auto r = ChunkCache::open(d.path(), ro);
    REQUIRE(r);
    CHECK((*r)->stats().chunks == 1);
    CHECK(*(*r)->get(k) == chunk_data(5));
    auto w = (*r)->put(chunk_data(6));
    REQUIRE_FALSE(w);
    CHECK(w.error().err() == EROFS);
}

TEST_CASE("concurrent puts of overlapping content store each chunk once", "[cache]") {
    CacheTempDir d;
    ChunkCacheOptions o;
    o.cache_size = 64 << 20;
    auto c = open_cache(d.path(), o);
    // Catch2 assertions are not thread-safe: the workers only count failures.
    std::atomic<int> failures{0};
    auto worker = [&](int start) {
        for (int i = 0; i < 200; i++)
            if (!c->put(chunk_data((start + i) % 150, 32768, true)))
                failures++;
    };
    std::thread t1(worker, 0), t2(worker, 75);
    t1.join();
    t2.join();
    CHECK(failures == 0);
    CacheStats s = c->stats();
    CHECK(s.chunks == 150);
    CHECK(s.counters.writes == 400);
    CHECK(s.counters.write_misses == 150);
    CHECK(s.counters.write_hits == 250);
    auto v = c->verify();
    CHECK(v.ok());
    CHECK(v.chunks_checked == 150);
}

TEST_CASE("a corrupt byte is refused by get and reported by verify and healed by a new put", "[cache]") {
    CacheTempDir d;
    ChunkKey k, header_hit;
    ChunkInfo inf, hinf;
    auto data = chunk_data(11, 65536, true);
    {
        auto c = open_cache(d.path());
        k = put_ok(*c, data);
        header_hit = put_ok(*c, chunk_data(12));
        inf = *c->info(k);
        hinf = *c->info(header_hit);
        REQUIRE(c->close());
    }
    std::string seg = d.sub(SegmentFile::file_name(inf.segment));
    criu::test::flip_byte(seg, inf.offset + kRecordHeaderBytes + inf.stored_size / 2);
    criu::test::flip_byte(d.sub(SegmentFile::file_name(hinf.segment)), hinf.offset + 10);  // inside the key

    auto c = open_cache(d.path());
    auto v = c->verify();
    REQUIRE(v.problems.size() == 2);
    CHECK_THAT(v.problems[0] + v.problems[1], Catch::Contains(k.short_hex()));
    CHECK_THAT(v.problems[0] + v.problems[1], Catch::Contains(header_hit.short_hex()));
    auto got = c->get(k);
    REQUIRE_FALSE(got);
    CHECK(got.error().err() == EIO);
    CHECK_THAT(got.error().str(), Catch::Contains(k.short_hex()) && Catch::Contains("corrupt"));
    CHECK(c->info(k)->corrupt);
    CHECK(c->stats().corrupt_chunks == 2);

    // The same content put again is stored afresh instead of deduplicated to the bad copy.
    put_ok(*c, data);
    CHECK_FALSE(c->info(k)->corrupt);
    CHECK(*c->get(k) == data);
    auto g = c->gc();
    REQUIRE(g);
    CHECK(g->corrupt_dropped == 1);
    CHECK_FALSE(c->contains(header_hit));
    CHECK(c->verify().ok());
}

TEST_CASE("snapshots pin durably and pins taken during a dump hold", "[cache]") {
    CacheTempDir d;
    std::vector<ChunkKey> keys;
    {
        auto c = open_cache(d.path());
        for (int i = 0; i < 8; i++)
            keys.push_back(put_ok(*c, chunk_data(i, 8192), "dump-1"));
        // Zero chunks may be named: they are always available.
        keys.push_back(*ZeroKeys::instance().key_of(8192));
        for (int i = 0; i < 8; i++)
            CHECK(c->info(keys[i])->pins == 1);  // pending pin from put(..., "dump-1")
        REQUIRE(c->pin_snapshot("dump-1", keys));
        for (int i = 0; i < 8; i++)
            CHECK(c->info(keys[i])->pins == 1);  // now the manifest's
        REQUIRE(c->pin_snapshot("dump-2", std::span(keys).first(4)));
        CHECK(c->info(keys[0])->pins == 2);

        auto bad = c->pin_snapshot("dump-3", std::vector<ChunkKey>{hash_chunk(chunk_data(99))});
        REQUIRE_FALSE(bad);
        CHECK_THAT(bad.error().str(), Catch::Contains("1 of its 1 chunks are not in the cache"));
        CHECK_FALSE(c->pin_snapshot("../x", keys));
        // Pins live in the manifests, not in the index: the reopen below rebuilds them.
        REQUIRE(c->commit());
    }
    auto c = open_cache(d.path());
    CHECK(c->snapshots() == std::vector<std::string>{"dump-1", "dump-2"});
    CHECK(c->info(keys[0])->pins == 2);
    CHECK(c->info(keys[7])->pins == 1);
    CHECK(c->stats().pinned_chunks == 8);
    REQUIRE(c->release_snapshot("dump-1"));
    CHECK(c->info(keys[0])->pins == 1);
    CHECK(c->info(keys[7])->pins == 0);
    CHECK_FALSE(c->release_snapshot("dump-1"));
    CHECK(c->verify().ok());

    // A dump that is abandoned releases its pending pins.
    ChunkKey k = put_ok(*c, chunk_data(50), "dump-9");
    CHECK(c->info(k)->pins == 1);
    REQUIRE(c->release_snapshot("dump-9"));
    CHECK(c->info(k)->pins == 0);
}

TEST_CASE("put_batch stores new chunks once and returns every key in order", "[cache]") {
    CacheTempDir d;
    ChunkCacheOptions o;
    o.cache_size = 64 << 20;
    o.segment_bytes = 256 << 10;  // the batch spans several segments: several writes
    o.threads = 2;
    auto c = open_cache(d.path(), o);
    REQUIRE(c->put(chunk_data(4, 65536)));  // already cached before the batch (= data[4])
    std::vector<std::vector<uint8_t>> data;
    for (int i = 0; i < 40; i++)
        data.push_back(chunk_data(i % 30, 65536, i % 2));  // 10 repeats inside the batch
    data.push_back(std::vector<uint8_t>(65536, 0));
    std::vector<std::span<const uint8_t>> spans(data.begin(), data.end());
    auto keys = c->put_batch(spans, "batch");
    REQUIRE(keys);
    REQUIRE(keys->size() == data.size());
    for (size_t i = 0; i < data.size(); i++) {
        CHECK((*keys)[i] == hash_chunk(data[i]));
        CHECK(*c->get((*keys)[i]) == data[i]);
    }
    CacheStats s = c->stats();
    // 30 distinct contents (i and i + 30 are the same), data[4] cached beforehand:
    // 29 stored by the batch, 10 repeats + data[4] are hits.
    CHECK(s.chunks == 30);
    CHECK(s.counters.zero_chunks == 1);
    CHECK(s.counters.write_misses == 1 + 29);
    CHECK(s.counters.write_hits == 11);
    CHECK(s.segments > 1);
    for (size_t i = 0; i < 40; i++)
        CHECK(c->info((*keys)[i])->pins == 1);
    CHECK(c->verify().ok());
}
