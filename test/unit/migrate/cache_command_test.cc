// `criu cache stat|verify|gc` and the option parsers.
#include <catch2/catch.hpp>

#include "migrate/cache/cache_command.h"
#include "migrate/cache/chunk_cache.h"
#include "migrate/cache/segment_file.h"
#include "test/unit/kfc/json_check.h"
#include "test/unit/migrate/cache_test_util.h"

using namespace criu;
using criu::test::CacheTempDir;
using criu::test::chunk_data;

namespace {

struct Run {
    int rc;
    std::string out, err;
};

Run run(const std::vector<std::string>& args, const std::string& dir, bool json) {
    Run r;
    r.rc = run_cache_command(args, dir, json, r.out, r.err);
    return r;
}

void check_json(const std::string& s) {
    auto j = criu::kfc::test::check_json(s);
    INFO(s);
    CHECK(j.ok);
    CHECK(j.error == "");
}

}  // namespace

TEST_CASE("option parsers for sizes and modes and policies", "[cache][command]") {
    CHECK(*parse_cache_size("4096") == 4096);
    CHECK(*parse_cache_size("64M") == (64ull << 20));
    CHECK(*parse_cache_size("4G") == (4ull << 30));
    CHECK(*parse_cache_size("2GiB") == (2ull << 30));
    CHECK(*parse_cache_size("512k") == (512ull << 10));
    CHECK(*parse_cache_size("1T") == (1ull << 40));
    CHECK_FALSE(parse_cache_size(""));
    CHECK_FALSE(parse_cache_size("G"));
    CHECK_FALSE(parse_cache_size("12Q"));
    CHECK_FALSE(parse_cache_size("99999999999999999999"));
    CHECK_FALSE(parse_cache_size("99999999999T"));
    CHECK(*parse_cache_mode("writeback") == CacheMode::writeback);
    CHECK(*parse_cache_mode("writethrough") == CacheMode::writethrough);
    CHECK_FALSE(parse_cache_mode("writearound"));
    CHECK(*parse_eviction_policy("lru") == EvictionPolicy::lru);
    CHECK(*parse_eviction_policy("fifo") == EvictionPolicy::fifo);
    CHECK_FALSE(parse_eviction_policy("random"));
}

TEST_CASE("cache stat and verify and gc on a healthy and a damaged cache", "[cache][command]") {
    CacheTempDir d;
    std::string dir = d.sub("c");
    ChunkKey bad;
    ChunkInfo bad_info;
    {
        ChunkCacheOptions o;
        o.mode = CacheMode::writeback;  // no remote: everything stays dirty
        o.cache_size = 16 << 20;
        auto c = ChunkCache::open(dir, o);
        REQUIRE(c);
        for (int i = 0; i < 10; i++)
            REQUIRE((*c)->put(chunk_data(i, 32768, true)));
        REQUIRE((*c)->put(chunk_data(3, 32768, true)));  // a write hit
        REQUIRE((*c)->put(std::vector<uint8_t>(8192, 0)));
        bad = hash_chunk(chunk_data(4, 32768, true));
        REQUIRE((*c)->get(bad));
        bad_info = *(*c)->info(bad);

        // stat works next to the running owner (read-only, no lock).
        REQUIRE((*c)->commit());
        Run s = run({"stat"}, dir, false);
        CHECK(s.rc == 0);
        CHECK_THAT(s.out, Catch::Contains("chunks 10 dirty 10"));
    }
    Run s = run({"stat"}, dir, false);
    CHECK(s.rc == 0);
    CHECK(s.err == "");
    CHECK_THAT(s.out, Catch::Contains("chunks 10 dirty 10") && Catch::Contains("reads 1 read_hits 1") &&
                          Catch::Contains("writes 12 write_hits 1") && Catch::Contains("mode writeback") &&
                          Catch::Contains("policy lru"));
    Run sj = run({"stat"}, dir, true);
    CHECK(sj.rc == 0);
    check_json(sj.out);
    CHECK_THAT(sj.out, Catch::Contains("\"dirty_chunks\": 10") && Catch::Contains("\"zero_chunks\": 1") &&
                           Catch::Contains("\"evictions\": 0") && Catch::Contains("\"hit_ratio\": "));

    Run v = run({"verify"}, dir, false);
    CHECK(v.rc == 0);
    CHECK_THAT(v.out, Catch::Contains("ok: 10 chunks checked"));

    criu::test::flip_byte(dir + "/" + SegmentFile::file_name(bad_info.segment),
                          bad_info.offset + kRecordHeaderBytes + 3);
    Run vb = run({"verify"}, dir, false);
    CHECK(vb.rc == 1);
    CHECK_THAT(vb.out, Catch::Contains(bad.short_hex()) && Catch::Contains("FAILED"));
    Run vj = run({"verify"}, dir, true);
    CHECK(vj.rc == 1);
    check_json(vj.out);
    CHECK_THAT(vj.out, Catch::Contains("\"ok\": false"));

    // gc drops the corrupt chunk, and says that it was dirty (the remote never got it).
    Run g = run({"gc"}, dir, true);
    CHECK(g.rc == 1);
    check_json(g.out);
    CHECK_THAT(g.out, Catch::Contains("\"corrupt_dropped\": 1") && Catch::Contains("the remote never got it"));
    CHECK(run({"verify"}, dir, false).rc == 0);
    Run g2 = run({"gc", "--target", "1M"}, dir, false);
    CHECK(g2.rc == 0);
    CHECK_THAT(g2.out, Catch::Contains("gc: evicted 0"));  // all dirty: nothing may go

    CHECK(run({}, dir, false).rc == 2);
    CHECK(run({"stat"}, "", false).rc == 2);
    CHECK(run({"frobnicate"}, dir, false).rc == 2);
    CHECK(run({"stat", "extra"}, dir, false).rc == 2);
    CHECK(run({"gc", "--target", "lots"}, dir, false).rc == 2);
    Run none = run({"stat"}, d.sub("nothing-here"), false);
    CHECK(none.rc == 1);
    CHECK_THAT(none.err, Catch::Contains("no cache at"));
}
