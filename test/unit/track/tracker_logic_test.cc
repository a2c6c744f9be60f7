// The parts of the trackers that need no kernel support: start-time parsing, the soft-dirty
// decision on pagemap words (this kernel has no soft-dirty, so it is tested on synthetic words
// only) and the hash tracker's comparison.
#include <catch2/catch.hpp>

#include "criu/core/pagemap_scan.h"
#include "migrate/track/hash_tracker.h"
#include "migrate/track/soft_dirty_tracker.h"

using namespace criu;

TEST_CASE("start time is field 22 of /proc/PID/stat even when comm holds spaces and parentheses") {
    std::string line = "4211 (a) b (c)) S 1 4211 4211 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
    CHECK(parse_start_time(line) == 987654);
    CHECK(parse_start_time("1 (x) S 1 2 3") == 0);
    CHECK(parse_start_time("garbage") == 0);
    auto self = read_start_time(getpid());
    REQUIRE(self);
    CHECK(*self > 0);
}

TEST_CASE("soft-dirty: clean data is unchanged, dirty data is written, no data is a hole") {
    const uint64_t base = 0x7f0000000000;
    const uint64_t sd = kPmSoftDirty;
    std::vector<uint64_t> words = {
        kPmPresent | 0x1234,            // 0 present, clean
        kPmPresent | sd | 0x1234,       // 1 present, written
        kPmSwap | (5ull << 5) | 3,      // 2 swapped (type 3), clean
        kPmSwap | sd | (5ull << 5) | 3, // 3 swapped, written
        0,                              // 4 nothing: dropped or never there
        kPmSwap | (1ull << 57) | 0x3f,  // 5 uffd-wp marker (type 31): no data
        kPmSwap | kPmGuardRegion,       // 6 guard region: no data
        kPmPresent | kPmFileOrSharedAnon, // 7 page cache, clean
    };
    DirtySet d;
    classify_pagemap_words(base, words, d);
    auto page = [&](int i) { return PageRange{base + i * 4096ull, base + (i + 1) * 4096ull}; };
    RangeSet written{page(1), page(3), page(4), page(5), page(6)};
    RangeSet zeroed{page(4), page(5), page(6)};
    CHECK(d.written == written);
    CHECK(d.zeroed == zeroed);
}

TEST_CASE("hash comparison: changed, new and vanished pages") {
    using PH = HashTracker::PageHash;
    std::vector<PH> prev = {{0x1000, 1}, {0x2000, 2}, {0x3000, 3}, {0x5000, 5}};
    std::vector<PH> cur = {{0x1000, 1}, {0x2000, 22}, {0x4000, 4}, {0x5000, 5}};
    DirtySet d = HashTracker::compare(prev, cur);
    CHECK(d.written == (RangeSet{{0x2000, 0x5000}}));
    CHECK(d.zeroed == (RangeSet{{0x3000, 0x4000}}));
    CHECK(HashTracker::compare(cur, cur).empty());
    CHECK(HashTracker::compare({}, {}).empty());
    std::vector<uint8_t> a(4096, 7), b(4096, 7);
    CHECK(track_page_hash(a.data()) == track_page_hash(b.data()));
    b[4095] = 8;
    CHECK(track_page_hash(a.data()) != track_page_hash(b.data()));
}
