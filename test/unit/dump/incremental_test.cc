#include <catch2/catch.hpp>

#include "criu/dump/incremental.h"
#include "criu/dump/pre_copy.h"

using namespace criu;

TEST_CASE("track record: round trip and strict parsing") {
    TrackRecord r{"uffd-wp", 123456, 0xfeedbeefcafe, 7};
    auto back = TrackRecord::decode(r.encode(), "track-1.txt");
    REQUIRE(back);
    CHECK(back->method == "uffd-wp");
    CHECK(back->start_time == 123456);
    CHECK(back->session == 0xfeedbeefcafe);
    CHECK(back->generation == 7);
    CHECK(TrackRecord::file_name(42) == "track-42.txt");

    auto bad = [](const char* text) {
        auto x = TrackRecord::decode(text, "DIR/track-9.txt");
        REQUIRE_FALSE(x);
        CHECK(x.error().str().find("DIR/track-9.txt") != std::string::npos);
    };
    bad("method uffd-wp\nstart_time 1\nsession 2\n");                         // generation missing
    bad("method magic\nstart_time 1\nsession 2\ngeneration 3\n");             // unknown method
    bad("method uffd-wp\nstart_time x1\nsession 2\ngeneration 3\n");          // not a number
    bad("method uffd-wp\nstart_time 1\nsession 2\ngeneration 3\nextra 4\n");  // unknown key
    bad("method uffd-wp\nstart_time 1 2\nsession 2\ngeneration 3\n");         // trailing junk
    bad("method\n");
    bad("");
}

TEST_CASE("pre-copy convergence: stop when the rest fits the downtime, or stops shrinking, or too many rounds") {
    const double speed = 250000;  // pages per second: ~1 GiB/s
    // Round 1 copies everything: never the last.
    CHECK_FALSE(pre_copy_should_stop(1, 1000000, 0, speed, 100));
    // 2500 pages at 250k pages/s take 10 ms: fits 100 ms.
    CHECK(pre_copy_should_stop(2, 2500, 0, speed, 100));
    // 100k pages take 400 ms: another round, as long as the estimate shrinks.
    CHECK_FALSE(pre_copy_should_stop(2, 100000, 0, speed, 100));
    CHECK_FALSE(pre_copy_should_stop(3, 60000, 100000, speed, 100));
    // Shrinking by less than a quarter: the workload dirties as fast as we copy.
    CHECK(pre_copy_should_stop(3, 90000, 100000, speed, 100));
    CHECK(pre_copy_should_stop(kMaxPreCopyRounds, 100000, 200000, speed, 100));
    // No speed measured yet: nothing fits but an empty rest.
    CHECK(pre_copy_should_stop(2, 0, 0, 0, 100));
}
