#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "criu/core/pagemap_scan.h"

using namespace criu;

namespace {
constexpr size_t kPg = 4096;
constexpr int kMadvGuardInstall = 102;  // 6.13

uint64_t count_pages(const std::vector<PmPageRegion>& rs) {
    uint64_t n = 0;
    for (auto& r : rs)
        n += (r.end - r.start) / kPg;
    return n;
}
}  // namespace

TEST_CASE("PAGEMAP_SCAN finds written anon pages, not zero-page or untouched ones") {
    auto* p = static_cast<volatile uint8_t*>(
        mmap(nullptr, 64 * kPg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(p != MAP_FAILED);
    for (int i = 0; i < 10; ++i)
        p[i * kPg] = 1;
    (void)p[20 * kPg];  // read only: maps the shared zero page
    uint64_t start = reinterpret_cast<uint64_t>(p);
    uint64_t end = start + 64 * kPg;

    auto sc = PagemapScanner::open(getpid(), true);
    REQUIRE(sc);
    auto r = sc->scan(start, end, kPageIsPresent | kPageIsSwapped, kPageIsPfnZero | kPageIsFile, 0);
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK((*r)[0].start == start);
    CHECK((*r)[0].end == start + 10 * kPg);

    // The raw fallback cannot see the zero page for what it is: it reports it as present.
    auto raw = PagemapScanner::open(getpid(), false);
    REQUIRE(raw);
    auto rr = raw->scan(start, end, kPageIsPresent | kPageIsSwapped, kPageIsPfnZero | kPageIsFile, 0);
    REQUIRE(rr);
    CHECK(count_pages(*rr) == 11);
    munmap(const_cast<uint8_t*>(p), 64 * kPg);
}

TEST_CASE("PAGEMAP_SCAN tells COWed pages of a private file mapping from page cache") {
    char path[] = "/tmp/criu-pm-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    std::vector<char> data(8 * kPg, 'a');
    REQUIRE(write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    auto* p = static_cast<volatile char*>(mmap(nullptr, 8 * kPg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    REQUIRE(p != MAP_FAILED);
    (void)p[0];           // page cache, mapped read-only
    p[3 * kPg] = 'b';     // COWed: anonymous now
    uint64_t start = reinterpret_cast<uint64_t>(p);
    for (bool ioctl_mode : {true, false}) {
        auto sc = PagemapScanner::open(getpid(), ioctl_mode);
        REQUIRE(sc);
        auto r = sc->scan(start, start + 8 * kPg, kPageIsPresent | kPageIsSwapped, kPageIsPfnZero | kPageIsFile, 0);
        REQUIRE(r);
        REQUIRE(r->size() == 1);
        CHECK((*r)[0].start == start + 3 * kPg);
        CHECK((*r)[0].end == start + 4 * kPg);
    }
    munmap(const_cast<char*>(p), 8 * kPg);
    close(fd);
}

TEST_CASE("guard regions, invisible in maps, are reported as such") {
    auto* p = static_cast<uint8_t*>(mmap(nullptr, 16 * kPg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(p != MAP_FAILED);
    if (madvise(p + 4 * kPg, 2 * kPg, kMadvGuardInstall) != 0) {
        munmap(p, 16 * kPg);
        WARN("MADV_GUARD_INSTALL not supported here");
        return;
    }
    p[0] = 1;
    uint64_t start = reinterpret_cast<uint64_t>(p);
    auto sc = PagemapScanner::open(getpid(), true);
    REQUIRE(sc);
    auto r = sc->scan(start, start + 16 * kPg, kPageIsPresent | kPageIsSwapped | kPageIsGuard,
                      kPageIsPfnZero | kPageIsFile, kPageIsGuard);
    REQUIRE(r);
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].start == start);
    CHECK((*r)[0].categories == 0);
    CHECK((*r)[1].start == start + 4 * kPg);
    CHECK((*r)[1].end == start + 6 * kPg);
    CHECK((*r)[1].categories == kPageIsGuard);
    munmap(p, 16 * kPg);
}
