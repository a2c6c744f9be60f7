#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "migrate/track/dirty_set.h"

using namespace criu;

namespace {
constexpr uint64_t P = kTrackPageSize;

// The model: a set of page numbers.
std::set<uint64_t> pages_of(const RangeSet& s) {
    std::set<uint64_t> out;
    for (const auto& r : s.ranges())
        for (uint64_t a = r.start; a < r.end; a += P)
            out.insert(a / P);
    return out;
}

void check_canonical(const RangeSet& s) {
    for (size_t i = 0; i < s.ranges().size(); ++i) {
        const auto& r = s.ranges()[i];
        REQUIRE(r.start < r.end);
        REQUIRE(r.start % P == 0);
        REQUIRE(r.end % P == 0);
        if (i)
            REQUIRE(s.ranges()[i - 1].end < r.start);  // disjoint and not touching
    }
}
}  // namespace

TEST_CASE("RangeSet merges touching and overlapping ranges and widens to pages") {
    RangeSet s;
    s.add(0x3000, 0x5000);
    s.add(0x1000, 0x2000);
    s.add(0x2000, 0x3000);  // touches both neighbours
    CHECK(s.ranges() == std::vector<PageRange>{{0x1000, 0x5000}});
    s.add(0x8001, 0x8002);  // inside one page
    CHECK(s.ranges().back() == PageRange{0x8000, 0x9000});
    s.add(0x4000, 0x8800);  // bridges the gap
    CHECK(s.ranges() == std::vector<PageRange>{{0x1000, 0x9000}});
    s.add(0x5000, 0x5000);  // empty: ignored
    CHECK(s.pages() == 8);
    CHECK(s.contains(0x1000));
    CHECK(s.contains(0x8fff));
    CHECK_FALSE(s.contains(0x9000));
    CHECK(s.overlaps(0x0, 0x1001));
    CHECK_FALSE(s.overlaps(0x9000, 0xa000));
}

TEST_CASE("RangeSet operations agree with a page-set model on random input") {
    std::mt19937_64 rng(42);
    for (int round = 0; round < 200; ++round) {
        RangeSet a, b;
        std::set<uint64_t> ma, mb;
        int n = int(rng() % 12);
        for (int i = 0; i < n; ++i) {
            uint64_t s = rng() % 64, len = 1 + rng() % 6;
            a.add(s * P, (s + len) * P);
            for (uint64_t k = s; k < s + len; ++k)
                ma.insert(k);
            uint64_t t = rng() % 64, len2 = 1 + rng() % 6;
            b.add(t * P, (t + len2) * P);
            for (uint64_t k = t; k < t + len2; ++k)
                mb.insert(k);
        }
        check_canonical(a);
        REQUIRE(pages_of(a) == ma);
        std::set<uint64_t> inter, diff, uni = ma;
        for (uint64_t k : ma)
            (mb.count(k) ? inter : diff).insert(k);
        uni.insert(mb.begin(), mb.end());
        RangeSet i = a.intersect(b), d = a.subtract(b), u = a;
        u.add(b);
        check_canonical(i);
        check_canonical(d);
        check_canonical(u);
        CHECK(pages_of(i) == inter);
        CHECK(pages_of(d) == diff);
        CHECK(pages_of(u) == uni);
        CHECK(u.pages() == uni.size());
        for (uint64_t k = 0; k < 72; ++k)
            REQUIRE(a.contains(k * P) == (ma.count(k) > 0));
    }
}

TEST_CASE("DirtySet merge: a page zeroed and then written is data, written and then zeroed is a hole") {
    DirtySet first;
    first.written.add(0x1000, 0x4000);
    first.zeroed.add(0x2000, 0x4000);
    DirtySet later;
    later.written.add(0x3000, 0x6000);
    later.zeroed.add(0x5000, 0x6000);
    first.merge(later);
    CHECK(first.written == RangeSet{{0x1000, 0x6000}});
    CHECK(first.zeroed == (RangeSet{{0x2000, 0x3000}, {0x5000, 0x6000}}));
}

TEST_CASE("DirtySet survives encode/decode and decode refuses malformed input") {
    DirtySet d;
    d.written.add(0x7f0000000000, 0x7f0000010000);
    d.written.add(0x10000, 0x11000);
    d.zeroed.add(0x7f0000004000, 0x7f0000006000);
    std::string wire = d.encode();
    auto back = DirtySet::decode(wire, "test");
    REQUIRE(back);
    CHECK(back->written == d.written);
    CHECK(back->zeroed == d.zeroed);

    CHECK_FALSE(DirtySet::decode(wire.substr(0, wire.size() - 1), "test"));  // truncated
    CHECK_FALSE(DirtySet::decode(wire + "x", "test"));                       // trailing bytes
    auto put = [](std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); };
    std::string bad;
    put(bad, 2);  // two written ranges, out of order
    put(bad, 0x5000);
    put(bad, 0x6000);
    put(bad, 0x1000);
    put(bad, 0x2000);
    put(bad, 0);
    auto r = DirtySet::decode(bad, "agent reply");
    REQUIRE_FALSE(r);
    CHECK(r.error().str().find("agent reply") != std::string::npos);
    std::string unaligned;
    put(unaligned, 1);
    put(unaligned, 0x1001);
    put(unaligned, 0x2000);
    put(unaligned, 0);
    CHECK_FALSE(DirtySet::decode(unaligned, "t"));
    std::string huge_count;
    put(huge_count, 1ull << 40);
    CHECK_FALSE(DirtySet::decode(huge_count, "t"));
    std::string zero_outside;
    put(zero_outside, 1);
    put(zero_outside, 0x1000);
    put(zero_outside, 0x2000);
    put(zero_outside, 1);
    put(zero_outside, 0x3000);
    put(zero_outside, 0x4000);
    CHECK_FALSE(DirtySet::decode(zero_outside, "t"));
}
