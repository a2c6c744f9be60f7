#include <catch2/catch.hpp>

#include "migrate/track/maps_diff.h"

using namespace criu;

namespace {
std::vector<MapsEntry> maps(const char* text) {
    auto r = parse_maps(text);
    REQUIRE(r);
    return *r;
}
}  // namespace

TEST_CASE("maps diff: identical maps, a protection split and a merge are no change") {
    auto prev = maps(
        "00400000-00401000 r-xp 00000000 08:01 1234 /bin/x\n"
        "7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
        "7f0000020000-7f0000024000 rw-p 00000000 00:00 0 \n"
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0 [vdso]\n");
    auto split = maps(
        "00400000-00401000 r-xp 00000000 08:01 1234 /bin/x\n"
        "7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
        "7f0000004000-7f0000008000 r--p 00000000 00:00 0 \n"
        "7f0000008000-7f0000010000 rw-p 00000000 00:00 0 \n"
        "7f0000020000-7f0000024000 rw-p 00000000 00:00 0 \n"
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0 [vdso]\n");
    MapsDiff d = diff_maps(prev, prev);
    CHECK(d.added.empty());
    CHECK(d.removed.empty());
    d = diff_maps(prev, split);
    CHECK(d.added.empty());
    d = diff_maps(split, prev);
    CHECK(d.added.empty());
}

TEST_CASE("maps diff: new, moved, grown and remapped VMAs are added; unmapped ones removed") {
    auto prev = maps(
        "00400000-00402000 r--p 00000000 08:01 1234 /bin/x\n"
        "7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
        "7f0000100000-7f0000104000 rw-s 00000000 00:01 77 /dev/zero (deleted)\n");
    auto cur = maps(
        // the file is now mapped at another offset at the same address
        "00400000-00402000 r--p 00001000 08:01 1234 /bin/x\n"
        // the anon VMA shrank by 4 pages at the end and grew by 2 at the front
        "7efffffe0000-7f000000c000 rw-p 00000000 00:00 0 \n"
        // the shared one was replaced by a private anon VMA
        "7f0000100000-7f0000104000 rw-p 00000000 00:00 0 \n"
        // a new VMA
        "7f0000200000-7f0000201000 rw-p 00000000 00:00 0 \n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n");
    MapsDiff d = diff_maps(prev, cur);
    CHECK(d.added == (RangeSet{{0x400000, 0x402000},
                               {0x7efffffe0000, 0x7f0000000000},
                               {0x7f0000100000, 0x7f0000104000},
                               {0x7f0000200000, 0x7f0000201000}}));
    CHECK(d.removed == RangeSet{{0x7f000000c000, 0x7f0000010000}});
    CHECK(d.vmas_added == 4);
}

TEST_CASE("maps diff: a heap and a plain anonymous VMA at the same place differ; special VMAs are ignored") {
    auto prev = maps("01000000-01021000 rw-p 00000000 00:00 0 [heap]\n");
    auto cur = maps(
        "01000000-01021000 rw-p 00000000 00:00 0 \n"
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0 [vdso]\n");
    CHECK(diff_maps(prev, cur).added == RangeSet{{0x1000000, 0x1021000}});
    MapsEntry v;
    v.path = "[vvar_vclock]";
    CHECK(vma_is_special(v));
    v.path = "[heap]";
    CHECK_FALSE(vma_is_special(v));
}

TEST_CASE("memory that changes behind the tracker: shared anonymous, memfd, SysV shm, private deleted files") {
    auto m = maps(
        "00400000-00401000 r-xp 00000000 08:01 1234 /bin/x\n"
        "7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
        "7f0000010000-7f0000011000 rw-s 00000000 00:01 77 /dev/zero (deleted)\n"
        "7f0000011000-7f0000012000 rw-s 00000000 00:01 78 /memfd:buf (deleted)\n"
        "7f0000012000-7f0000013000 r--p 00000000 00:01 79 /memfd:ro (deleted)\n"
        "7f0000013000-7f0000014000 rw-s 00000000 00:01 80 /SYSV0000002a (deleted)\n"
        "7f0000014000-7f0000015000 r--p 00000000 08:01 81 /var/tmp/gone (deleted)\n"
        "7f0000015000-7f0000016000 rw-s 00000000 08:01 82 /var/tmp/data\n"
        "7f0000016000-7f0000017000 rw-p 00000000 08:01 83 /var/tmp/data\n"
        "7f0000017000-7f0000018000 rw-s 00000000 00:00 0 \n"
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0 [vdso]\n");
    REQUIRE(m.size() == 11);
    std::vector<bool> want = {false, false, true, true, true, true, true, false, false, true, false};
    for (size_t i = 0; i < m.size(); ++i) {
        INFO(m[i].path << " shared=" << m[i].shared);
        CHECK(vma_content_untrackable(m[i]) == want[i]);
    }
}
