// Eviction order (LRU, FIFO), what eviction must never take, the "cache full" answer,
// and the bound on disk use under churn (compaction, gc).
#include <catch2/catch.hpp>

#include "migrate/cache/chunk_cache.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;

namespace {

constexpr uint64_t kCacheSize = 4 << 20;  // live limit 3 MiB, segments of 256 KiB
constexpr size_t kChunk = 65536;          // random: stored raw, one 68 KiB record

// How many random 64 KiB chunks fit under the live limit.
size_t chunks_that_fit() { return (kCacheSize / 4 * 3) / record_bytes(kChunk); }

std::unique_ptr<ChunkCache> open_cache(const std::string& dir, ChunkCacheOptions o) {
    o.cache_size = kCacheSize;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        FAIL(c.error().str());
    return std::move(*c);
}

ChunkKey put_ok(ChunkCache& c, uint64_t seed) {
    auto k = c.put(chunk_data(seed, kChunk));
    if (!k)
        FAIL(k.error().str());
    return *k;
}

}  // namespace

TEST_CASE("LRU evicts the least recently used chunk and FIFO the oldest", "[cache][eviction]") {
    for (EvictionPolicy policy : {EvictionPolicy::lru, EvictionPolicy::fifo}) {
        CAPTURE(policy_name(policy));
        CacheTempDir d;
        ChunkCacheOptions o;
        o.mode = CacheMode::standalone;
        o.policy = policy;
        auto c = open_cache(d.path(), o);
        size_t n = chunks_that_fit();
        REQUIRE(n >= 8);
        std::vector<ChunkKey> keys;
        for (size_t i = 0; i < n; i++)
            keys.push_back(put_ok(*c, i));
        CHECK(c->stats().counters.evictions == 0);
        // Use chunks 0 and 1 (a read and a deduplicated write both count as a use).
        REQUIRE(c->get(keys[0]));
        put_ok(*c, 1);
        // Three new chunks need three evictions.
        for (size_t i = 0; i < 3; i++)
            keys.push_back(put_ok(*c, 1000 + i));
        CHECK(c->stats().counters.evictions == 3);
        std::vector<size_t> gone;
        for (size_t i = 0; i < n; i++)
            if (!c->contains(keys[i]))
                gone.push_back(i);
        if (policy == EvictionPolicy::lru)
            CHECK(gone == std::vector<size_t>{2, 3, 4});
        else
            CHECK(gone == std::vector<size_t>{0, 1, 2});
        CHECK(c->verify().ok());
    }
}

TEST_CASE("eviction never takes dirty or pinned chunks and a cache full of them says so", "[cache][eviction]") {
    CacheTempDir d;
    auto rs = criu::test::RemoteSide::open(d.sub("remote"));
    criu::test::GatedRemote gate(*rs.remote);
    ChunkCacheOptions o;
    o.mode = CacheMode::writeback;
    o.remote = &gate;
    auto c = open_cache(d.sub("local"), o);

    std::vector<ChunkKey> clean, dirty;
    for (int i = 0; i < 10; i++)
        clean.push_back(put_ok(*c, i));
    REQUIRE(c->flush());
    REQUIRE(c->pin_snapshot("keep", std::span(clean).first(5)));

    // The remote stops answering: everything from now on stays dirty.
    gate.close_gate();
    Error full(0, "");
    for (int i = 0;; i++) {
        auto k = c->put(chunk_data(100 + i, kChunk));
        if (!k) {
            full = k.error();
            break;
        }
        dirty.push_back(*k);
        REQUIRE(i < 200);
    }
    CHECK(full.err() == ENOSPC);
    CHECK_THAT(full.str(), Catch::Contains("cache full") && Catch::Contains("MiB dirty waiting for the remote") &&
                               Catch::Contains("pinned by snapshots"));
    // Only the five clean, unpinned chunks went.
    CacheStats s = c->stats();
    CHECK(s.counters.evictions == 5);
    for (int i = 0; i < 5; i++)
        CHECK(c->contains(clean[i]));
    for (int i = 5; i < 10; i++)
        CHECK_FALSE(c->contains(clean[i]));
    for (const auto& k : dirty)
        CHECK(c->info(k)->dirty);
    CHECK(s.dirty_chunks == dirty.size());
    CHECK(s.disk_bytes <= kCacheSize);
    CHECK(c->verify().ok());

    // Once the remote has them they are clean, and the cache makes room again.
    gate.open_gate();
    REQUIRE(c->flush());
    CHECK(c->stats().dirty_chunks == 0);
    for (const auto& k : dirty)
        CHECK(rs.store->contains(k));
    ChunkKey more = put_ok(*c, 5000);
    CHECK(c->contains(more));
    for (int i = 0; i < 5; i++)
        CHECK(c->contains(clean[i]));  // still pinned
    CHECK(c->stats().counters.evictions > 5);
}

TEST_CASE("a cache without a remote fills with dirty chunks and refuses without evicting", "[cache][eviction]") {
    CacheTempDir d;
    ChunkCacheOptions o;
    o.mode = CacheMode::writeback;  // and no remote attached yet
    auto c = open_cache(d.path(), o);
    size_t stored = 0;
    for (;; stored++) {
        auto k = c->put(chunk_data(stored, kChunk));
        if (!k) {
            CHECK_THAT(k.error().str(), Catch::Contains("no remote attached"));
            break;
        }
        REQUIRE(stored < 100);
    }
    CHECK(stored == chunks_that_fit());
    CHECK(c->stats().counters.evictions == 0);
    auto f = c->flush();
    REQUIRE_FALSE(f);
    CHECK_THAT(f.error().str(), Catch::Contains("no remote attached"));
}

TEST_CASE("disk use stays within the cache size under churn", "[cache][eviction]") {
    for (EvictionPolicy policy : {EvictionPolicy::lru, EvictionPolicy::fifo}) {
        CAPTURE(policy_name(policy));
        CacheTempDir d;
        ChunkCacheOptions o;
        o.mode = CacheMode::standalone;
        o.policy = policy;
        auto c = open_cache(d.path(), o);
        std::vector<ChunkKey> keys;
        for (uint64_t i = 0; i < 400; i++) {
            // Mixed sizes and compressibility; every 8th chunk pinned (a snapshot still
            // needs it) and re-reads under LRU leave live chunks in old segments, so
            // their space only comes back by compaction.
            auto data = chunk_data(i, 4096 * (1 + i % 16), i % 3 == 0);
            auto k = c->put(data, i % 8 == 0 ? "keep" : "");
            REQUIRE(k);
            keys.push_back(*k);
            if (i % 5 == 0 && i >= 10)
                (void)c->get(keys[i - 10]);
            REQUIRE(c->stats().disk_bytes <= kCacheSize);
        }
        CacheStats s = c->stats();
        CHECK(s.counters.evictions > 0);
        CHECK(s.counters.compactions > 0);
        CHECK(s.live_bytes <= s.live_limit);
        CHECK(c->verify().ok());
        // Everything still indexed reads back as what was put.
        size_t present = 0;
        for (uint64_t i = 0; i < keys.size(); i++)
            if (c->contains(keys[i])) {
                present++;
                CHECK(*c->get(keys[i]) == chunk_data(i, 4096 * (1 + i % 16), i % 3 == 0));
            }
        CHECK(present > 50);
        for (uint64_t i = 0; i < keys.size(); i += 8)
            CHECK(c->contains(keys[i]));
        REQUIRE(c->release_snapshot("keep"));

        auto g = c->gc(1 << 20);
        REQUIRE(g);
        CHECK(c->stats().live_bytes <= (1u << 20));
        CHECK(g->disk_bytes_after < g->disk_bytes_before);
        CHECK(c->stats().disk_bytes == c->stats().live_bytes + 0);
        CHECK(c->verify().ok());
    }
}

TEST_CASE("a batch larger than the cache evicts its own clean chunks or stops at the dirty limit", "[cache][eviction]") {
    size_t n = chunks_that_fit() + 15;
    std::vector<std::vector<uint8_t>> data;
    for (size_t i = 0; i < n; i++)
        data.push_back(chunk_data(i, kChunk));
    std::vector<std::span<const uint8_t>> spans(data.begin(), data.end());
    {
        CacheTempDir d;
        ChunkCacheOptions o;
        o.mode = CacheMode::standalone;
        auto c = open_cache(d.path(), o);
        auto keys = c->put_batch(spans);
        REQUIRE(keys);
        CHECK(c->stats().counters.evictions >= 15);
        CHECK(c->contains(keys->back()));
        CHECK(c->stats().live_bytes <= c->stats().live_limit);
        CHECK(c->verify().ok());
    }
    {
        CacheTempDir d;
        ChunkCacheOptions o;
        o.mode = CacheMode::writeback;  // no remote: nothing can become clean
        auto c = open_cache(d.path(), o);
        auto keys = c->put_batch(spans);
        REQUIRE_FALSE(keys);
        CHECK_THAT(keys.error().str(), Catch::Contains("cache full"));
        // What fitted is stored and indexed; nothing was evicted.
        CHECK(c->stats().chunks == chunks_that_fit());
        CHECK(c->stats().counters.evictions == 0);
        CHECK(c->contains(hash_chunk(data[0])));
        CHECK(c->verify().ok());
    }
}
