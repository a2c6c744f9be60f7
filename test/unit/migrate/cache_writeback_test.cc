// Write-back and writethrough against an in-process remote (another cache directory):
// what is sent, what is never sent again, when a put is acknowledged.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "migrate/cache/cache_remote.h"
#include "migrate/cache/chunk_cache.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;
using criu::test::RemoteSide;

namespace {

std::unique_ptr<ChunkCache> open_local(const std::string& dir, ChunkRemote* remote,
                                       CacheMode mode = CacheMode::writeback) {
    ChunkCacheOptions o;
    o.cache_size = 32 << 20;
    o.mode = mode;
    o.remote = remote;
    o.writeback_batch = 8;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        FAIL(c.error().str());
    return std::move(*c);
}

Status put_status(ChunkCache& c, const std::vector<uint8_t>& data) {
    auto k = c.put(data);
    if (!k)
        return std::unexpected(std::move(k.error()));
    return {};
}

}  // namespace

TEST_CASE("write-back makes chunks clean and never sends a chunk twice", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    auto c = open_local(d.sub("local"), rs.remote.get());
    std::vector<ChunkKey> keys;
    for (int i = 0; i < 20; i++) {
        auto k = c->put(chunk_data(i, 32768, true));
        REQUIRE(k);
        keys.push_back(*k);
    }
    // Zero pages never go anywhere.
    auto z = c->put(std::vector<uint8_t>(65536, 0));
    REQUIRE(z);
    REQUIRE(c->flush());
    auto t = rs.remote->traffic();
    CHECK(t.chunks_received == 20);
    CHECK(t.keys_asked == 20);
    for (const auto& k : keys) {
        CHECK_FALSE(c->info(k)->dirty);
        REQUIRE(rs.store->contains(k));
    }
    CacheStats s = c->stats();
    CHECK(s.counters.writebacks == 20);
    CHECK(s.dirty_chunks == 0);
    // Sent in stored (compressed) form.
    CHECK(t.bytes_received < 20 * 32768 * 2 / 3);
    CHECK(*rs.store->get(keys[7]) == chunk_data(7, 32768, true));

    // The same pages again (the next pre-copy iteration): deduplicated locally.
    for (int i = 0; i < 20; i++)
        REQUIRE(c->put(chunk_data(i, 32768, true)));
    REQUIRE(c->flush());
    CHECK(rs.remote->traffic().chunks_received == 20);
    CHECK(rs.remote->traffic().keys_asked == 20);

    // Evicted locally, then dumped again: dirty again, but the remote says it has
    // them, so they are marked clean without being sent.
    auto g = c->gc(1);
    REQUIRE(g);
    CHECK(g->evicted == 20);
    for (int i = 0; i < 20; i++)
        REQUIRE(c->put(chunk_data(i, 32768, true)));
    REQUIRE(c->flush());
    t = rs.remote->traffic();
    CHECK(t.chunks_received == 20);
    CHECK(t.keys_asked == 40);
    s = c->stats();
    CHECK(s.counters.dedup_remote_chunks == 20);
    CHECK(s.counters.dedup_remote_bytes == 20 * 32768);

    // Another process with its own cache dumping the same content: never sent either.
    auto other = open_local(d.sub("other"), rs.remote.get());
    for (int i = 0; i < 20; i++)
        REQUIRE(other->put(chunk_data(i, 32768, true)));
    REQUIRE(other->put(chunk_data(777, 32768, true)));
    REQUIRE(other->flush());
    CHECK(rs.remote->traffic().chunks_received == 21);
}

TEST_CASE("writeback acknowledges before the remote has it and writethrough only after", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    criu::test::GatedRemote gate(*rs.remote);

    SECTION("writeback") {
        auto c = open_local(d.sub("wb"), &gate);
        gate.close_gate();
        // Returns on this thread while the remote is held: acknowledged locally.
        auto k = c->put(chunk_data(1));
        REQUIRE(k);
        gate.wait_until_blocked();
        CHECK(c->info(*k)->dirty);
        CHECK_FALSE(rs.store->contains(*k));
        gate.open_gate();
        REQUIRE(c->flush());
        CHECK_FALSE(c->info(*k)->dirty);
        CHECK(rs.store->contains(*k));
    }
    SECTION("writethrough") {
        auto c = open_local(d.sub("wt"), &gate, CacheMode::writethrough);
        gate.close_gate();
        auto data = chunk_data(2);
        ChunkKey key = hash_chunk(data);
        std::atomic<bool> returned{false};
        Expected<ChunkKey> result = fail(0, "not run");
        std::thread t([&] {
            result = c->put(data);
            returned = true;
        });
        gate.wait_until_blocked();
        // The put is stuck at the remote: not acknowledged, and the remote lacks it.
        CHECK_FALSE(returned);
        CHECK_FALSE(rs.store->contains(key));
        gate.open_gate();
        t.join();
        REQUIRE(result);
        CHECK(rs.store->contains(key));
        CHECK_FALSE(c->info(key)->dirty);
        CHECK(c->stats().counters.writebacks == 1);
        // A second put of the same content is a local hit and asks nothing.
        auto asked = rs.remote->traffic().keys_asked;
        REQUIRE(c->put(data));
        CHECK(rs.remote->traffic().keys_asked == asked);
    }
}

TEST_CASE("writethrough fails the put when the remote fails and the writer retries later", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    criu::test::GatedRemote gate(*rs.remote);
    auto c = open_local(d.sub("wt"), &gate, CacheMode::writethrough);
    gate.fail_next(1);
    auto k = c->put(chunk_data(3));
    REQUIRE_FALSE(k);
    CHECK_THAT(k.error().str(), Catch::Contains("connection dropped") && Catch::Contains("writethrough"));
    ChunkKey key = hash_chunk(chunk_data(3));
    // Stored locally, still dirty; the background writer delivers it.
    REQUIRE(c->contains(key));
    REQUIRE(c->flush());
    CHECK(rs.store->contains(key));
    CHECK_FALSE(c->info(key)->dirty);
}

TEST_CASE("write-back survives remote errors and flush reports them", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    criu::test::GatedRemote gate(*rs.remote);
    auto c = open_local(d.sub("local"), &gate);
    gate.fail_next(1000000);
    for (int i = 0; i < 5; i++)
        REQUIRE(c->put(chunk_data(i)));
    auto f = c->flush();
    REQUIRE_FALSE(f);
    CHECK_THAT(f.error().str(), Catch::Contains("write-back failed") && Catch::Contains("connection dropped"));
    CHECK(c->stats().counters.writeback_errors >= 1);
    CHECK(c->stats().dirty_chunks == 5);
    CHECK_THAT(c->stats().last_writeback_error, Catch::Contains("connection dropped"));
    gate.fail_next(0);
    REQUIRE(c->flush());
    CHECK(c->stats().dirty_chunks == 0);
    CHECK(rs.remote->traffic().chunks_received == 5);
}

TEST_CASE("dirty chunks stay dirty across a restart and are written back after it", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    std::vector<ChunkKey> keys;
    {
        auto c = open_local(d.sub("local"), nullptr);  // no remote yet
        for (int i = 0; i < 10; i++)
            keys.push_back(*c->put(chunk_data(i)));
        CHECK(c->stats().dirty_chunks == 10);
    }
    auto c = open_local(d.sub("local"), rs.remote.get());
    CHECK(c->stats().dirty_chunks == 10);
    REQUIRE(c->flush());
    CHECK(rs.remote->traffic().chunks_received == 10);
    for (const auto& k : keys)
        CHECK(rs.store->contains(k));
}

TEST_CASE("the receiving side refuses a chunk that does not match its key", "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    auto data = chunk_data(1, 8192);
    StoredChunk c{hash_chunk(chunk_data(2, 8192)), ChunkCodec::raw, 8192, data};
    auto st = rs.store->put_stored(c);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().str(), Catch::Contains("does not match its key"));
    CHECK(rs.store->stats().chunks == 0);
    c.key = hash_chunk(data);
    REQUIRE(rs.store->put_stored(c));
    CHECK(*rs.store->get(c.key) == data);
}

TEST_CASE("wait_for_writeback: a cache full of dirty chunks waits for the writer, never evicts them",
          "[cache][writeback]") {
    CacheTempDir d;
    auto rs = RemoteSide::open(d.sub("remote"));
    criu::test::GatedRemote gate(*rs.remote);
    ChunkCacheOptions o;
    o.cache_size = 4 << 20;  // live room: 3 MiB, 48 chunks of 64 KiB (incompressible)
    o.remote = &gate;
    o.writeback_batch = 8;

    SECTION("without it the put fails with cache full") {
        auto c = ChunkCache::open(d.sub("local"), o);
        REQUIRE(c);
        gate.close_gate();
        Status st;
        for (int i = 0; i < 200 && st; i++)
            st = put_status(**c, chunk_data(i));
        REQUIRE_FALSE(st);
        CHECK(st.error().err() == ENOSPC);
        CHECK_THAT(st.error().str(), Catch::Contains("cache full") && Catch::Contains("dirty"));
        CHECK((*c)->stats().counters.evictions == 0);
        gate.open_gate();
    }
    SECTION("with it the put waits for the remote, and every chunk arrives there") {
        o.wait_for_writeback = true;
        auto c = ChunkCache::open(d.sub("local"), o);
        REQUIRE(c);
        gate.close_gate();
        constexpr int kChunks = 200;  // 12.5 MiB through 3 MiB of room
        std::atomic<int> stored{0};
        Status result;
        std::thread t([&] {
            for (int i = 0; i < kChunks && result; i++) {
                result = put_status(**c, chunk_data(i));
                stored++;
            }
        });
        gate.wait_until_blocked();
        // The remote is held: the writer cannot clean anything, so the puts stop once the
        // room is full of dirty chunks, without failing and without evicting any of them.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while ((*c)->stats().counters.writeback_waits == 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        CacheStats s = (*c)->stats();
        CHECK(s.counters.writeback_waits >= 1);
        CHECK(stored < kChunks);
        CHECK(s.counters.evictions == 0);
        CHECK(s.dirty_chunks == s.chunks);
        gate.open_gate();
        t.join();
        REQUIRE(result);
        REQUIRE((*c)->flush());
        s = (*c)->stats();
        CHECK(s.dirty_chunks == 0);
        CHECK(s.counters.evictions > 0);  // clean ones made room
        for (int i = 0; i < kChunks; i++)
            REQUIRE(rs.store->contains(hash_chunk(chunk_data(i))));
    }
    SECTION("a failing remote ends the wait with an error instead of a hang") {
        o.wait_for_writeback = true;
        auto c = ChunkCache::open(d.sub("local"), o);
        REQUIRE(c);
        gate.fail_next(1000000);
        Status st;
        for (int i = 0; i < 200 && st; i++)
            st = put_status(**c, chunk_data(i));
        REQUIRE_FALSE(st);
        CHECK(st.error().err() == ENOSPC);
        CHECK_THAT(st.error().str(), Catch::Contains("write-back failed meanwhile"));
        CHECK((*c)->stats().counters.evictions == 0);
        gate.fail_next(0);
    }
}
