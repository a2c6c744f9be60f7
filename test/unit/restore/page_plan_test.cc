#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "images/image_dir.h"
#include "images/page_writer.h"
#include "restore/page_plan.h"
#include "restore_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

std::vector<char> pattern(size_t pages, char seed) {
    std::vector<char> v(pages * 4096);
    for (size_t i = 0; i < v.size(); i++)
        v[i] = char(seed + i / 4096 * 7 + i % 251);
    return v;
}

ImageDir make_dir(const std::string& path, const std::string& parent = "") {
    auto d = ImageDir::create(path);
    REQUIRE(d);
    auto inv = valid_inventory();
    inv.set_parent_dir(parent);
    REQUIRE(d->write_inventory(inv));
    return std::move(*d);
}

std::vector<char> read_source(const PagePlan& plan, const PlannedRun& r) {
    std::vector<char> out(r.nr_pages * 4096);
    REQUIRE(pread(plan.sources.at(size_t(r.source)), out.data(), out.size(), off_t(r.offset)) ==
            ssize_t(out.size()));
    if (r.direct_source >= 0) {
        // The O_DIRECT twin reads the same bytes (into an aligned buffer, as the blob's pages are).
        void* mem = nullptr;
        REQUIRE(posix_memalign(&mem, 4096, out.size()) == 0);
        std::unique_ptr<char, decltype(&free)> buf(static_cast<char*>(mem), &free);
        REQUIRE(pread(plan.sources.at(size_t(r.direct_source)), buf.get(), out.size(), off_t(r.offset)) ==
                ssize_t(out.size()));
        CHECK(std::memcmp(buf.get(), out.data(), out.size()) == 0);
    }
    return out;
}

PageWriterOptions buffered(PageCodec codec = images::CODEC_RAW) {
    PageWriterOptions o;
    o.codec = codec;
    o.direct_io = false;
    o.threads = 0;
    return o;
}

}  // namespace

TEST_CASE("pages resolve to pread-able runs; zeros in anonymous memory cost nothing") {
    ScratchDir tmp;
    ImageDir dir = make_dir(tmp.path() + "/d");
    auto a = pattern(4, 'a'), b = pattern(2, 'b');
    {
        auto w = PageWriter::create(dir, 4242, buffered());
        REQUIRE(w);
        REQUIRE(w->add_pages(kAnonStart, a.data(), 4));
        REQUIRE(w->add_zero(kAnonStart + 5 * 4096, 1));
        REQUIRE(w->add_pages(kAnonStart + 8 * 4096, b.data(), 2));
        REQUIRE(w->finish());
    }
    auto reader = PageReader::open(dir, 4242);
    REQUIRE(reader);
    auto p = valid_process();
    auto plan = plan_pages(*reader, p.mm, 4242);
    REQUIRE(plan);
    REQUIRE(plan->runs.size() == 2);
    CHECK(plan->runs[0].vaddr == kAnonStart);
    CHECK(plan->runs[0].nr_pages == 4);
    CHECK(read_source(*plan, plan->runs[0]) == a);
    CHECK(plan->runs[1].vaddr == kAnonStart + 8 * 4096);
    CHECK(read_source(*plan, plan->runs[1]) == b);
    // Raw runs are block aligned in the file: both have an O_DIRECT twin (every filesystem
    // here, tmpfs included since 6.6, takes O_DIRECT).
    CHECK(plan->runs[0].direct_source >= 0);
    CHECK(plan->runs[0].direct_source == plan->runs[1].direct_source);
    CHECK(plan->pages_from_images == 6);
    CHECK(plan->pages_zeroed == 0);
    CHECK(plan->vma_filled[2]);
    CHECK_FALSE(plan->vma_filled[1]);
}

TEST_CASE("a zero page of a private file mapping is written as zeros") {
    ScratchDir tmp;
    ImageDir dir = make_dir(tmp.path() + "/d");
    {
        auto w = PageWriter::create(dir, 4242, buffered());
        REQUIRE(w);
        REQUIRE(w->add_zero(kTextStart + 4096, 1));
        REQUIRE(w->finish());
    }
    auto reader = PageReader::open(dir, 4242);
    REQUIRE(reader);
    auto plan = plan_pages(*reader, valid_process().mm, 4242);
    REQUIRE(plan);
    REQUIRE(plan->runs.size() == 1);
    CHECK(plan->runs[0] == PlannedRun{kTextStart + 4096, 1, -1, 0});
    CHECK(plan->pages_zeroed == 1);
    CHECK(plan->vma_filled[0]);
}

TEST_CASE("pages outside every VMA, or in a VMA that takes none, are refused") {
    ScratchDir tmp;
    auto data = pattern(1, 'x');
    SECTION("outside") {
        ImageDir dir = make_dir(tmp.path() + "/d");
        auto w = PageWriter::create(dir, 4242, buffered());
        REQUIRE(w->add_pages(kAnonStart + 16 * 4096, data.data(), 1));  // just past the VMA
        REQUIRE(w->finish());
        auto reader = PageReader::open(dir, 4242);
        REQUIRE(reader);
        auto plan = plan_pages(*reader, valid_process().mm, 4242);
        REQUIRE_FALSE(plan);
        CHECK_THAT(plan.error().str(), Catch::Contains("outside every VMA") && Catch::Contains("pid 4242"));
    }
    SECTION("straddling the end of a VMA") {
        ImageDir dir = make_dir(tmp.path() + "/d");
        auto two = pattern(2, 'y');
        auto w = PageWriter::create(dir, 4242, buffered());
        REQUIRE(w->add_pages(kAnonStart + 15 * 4096, two.data(), 2));
        REQUIRE(w->finish());
        auto reader = PageReader::open(dir, 4242);
        REQUIRE(reader);
        auto plan = plan_pages(*reader, valid_process().mm, 4242);
        REQUIRE_FALSE(plan);
        CHECK_THAT(plan.error().str(), Catch::Contains("outside every VMA"));
    }
    SECTION("vdso") {
        ImageDir dir = make_dir(tmp.path() + "/d");
        auto w = PageWriter::create(dir, 4242, buffered());
        REQUIRE(w->add_pages(kVdsoBlock + 0x6000, data.data(), 1));
        REQUIRE(w->finish());
        auto reader = PageReader::open(dir, 4242);
        REQUIRE(reader);
        auto plan = plan_pages(*reader, valid_process().mm, 4242);
        REQUIRE_FALSE(plan);
        CHECK_THAT(plan.error().str(), Catch::Contains("VMA_VDSO VMA, which takes no dumped pages"));
    }
}

TEST_CASE("zstd pages are decoded once into a memfd") {
    ScratchDir tmp;
    ImageDir dir = make_dir(tmp.path() + "/d");
    auto a = pattern(10, 'z');
    {
        auto w = PageWriter::create(dir, 4242, buffered(images::CODEC_ZSTD));
        REQUIRE(w);
        REQUIRE(w->add_pages(kAnonStart + 2 * 4096, a.data(), 10));
        REQUIRE(w->finish());
    }
    auto reader = PageReader::open(dir, 4242);
    REQUIRE(reader);
    auto plan = plan_pages(*reader, valid_process().mm, 4242);
    REQUIRE(plan);
    REQUIRE(plan->runs.size() == 1);
    CHECK(plan->runs[0].nr_pages == 10);
    CHECK(plan->owned.size() == 1);
    CHECK(read_source(*plan, plan->runs[0]) == a);
}

TEST_CASE("zstd frames decode on two threads, whole and in parts, each into its place") {
    ScratchDir tmp;
    ImageDir parent = make_dir(tmp.path() + "/parent");
    auto heap = pattern(33, 'h'), old = pattern(8, 'o');
    {
        auto o = buffered(images::CODEC_ZSTD);
        o.frame_pages = 4;  // 9 frames of heap, the last one short; 2 of anon
        auto w = PageWriter::create(parent, 4242, o);
        REQUIRE(w);
        REQUIRE(w->add_pages(kHeapStart, heap.data(), 33));
        REQUIRE(w->add_pages(kAnonStart, old.data(), 8));
        REQUIRE(w->finish());
    }
    ImageDir child = make_dir(tmp.path() + "/child", "../parent");
    auto fresh = pattern(2, 'c');
    {
        auto w = PageWriter::create(child, 4242, buffered());
        REQUIRE(w->add_parent(kHeapStart, 33));
        REQUIRE(w->add_parent(kAnonStart, 3));  // the first frame without its last page
        REQUIRE(w->add_pages(kAnonStart + 3 * 4096, fresh.data(), 2));
        REQUIRE(w->add_parent(kAnonStart + 5 * 4096, 3));  // the second one without its first
        REQUIRE(w->finish());
    }
    auto reader = PageReader::open(child, 4242);
    REQUIRE(reader);
    auto plan = plan_pages(*reader, valid_process().mm, 4242);
    REQUIRE(plan);
    std::vector<char> heap_got, anon_got;
    for (const auto& r : plan->runs) {
        auto part = read_source(*plan, r);
        auto& to = r.vaddr < kAnonStart ? heap_got : anon_got;
        to.insert(to.end(), part.begin(), part.end());
    }
    CHECK(heap_got == heap);
    std::vector<char> want(old.begin(), old.end());
    std::memcpy(want.data() + 3 * 4096, fresh.data(), fresh.size());
    CHECK(anon_got == want);
    CHECK(plan->pages_from_images == 33 + 8);
}

TEST_CASE("PE_PARENT pages come from the parent image") {
    ScratchDir tmp;
    ImageDir parent = make_dir(tmp.path() + "/parent");
    auto old = pattern(8, 'p');
    {
        auto w = PageWriter::create(parent, 4242, buffered());
        REQUIRE(w->add_pages(kAnonStart, old.data(), 8));
        REQUIRE(w->finish());
    }
    ImageDir child = make_dir(tmp.path() + "/child", "../parent");
    auto fresh = pattern(2, 'c');
    {
        auto w = PageWriter::create(child, 4242, buffered());
        REQUIRE(w->add_parent(kAnonStart, 3));
        REQUIRE(w->add_pages(kAnonStart + 3 * 4096, fresh.data(), 2));
        REQUIRE(w->add_parent(kAnonStart + 5 * 4096, 3));
        REQUIRE(w->finish());
    }
    auto reader = PageReader::open(child, 4242);
    REQUIRE(reader);
    auto plan = plan_pages(*reader, valid_process().mm, 4242);
    REQUIRE(plan);
    REQUIRE(plan->runs.size() == 3);
    std::vector<char> all;
    for (const auto& r : plan->runs) {
        auto part = read_source(*plan, r);
        all.insert(all.end(), part.begin(), part.end());
    }
    std::vector<char> want(old.begin(), old.end());
    std::memcpy(want.data() + 3 * 4096, fresh.data(), fresh.size());
    CHECK(all == want);
    std::set<int> used;
    for (const auto& r : plan->runs)
        used.insert(r.source);
    CHECK(used.size() == 2);  // both pages files, no copies
    for (const auto& fd : plan->owned)  // only O_DIRECT twins of them
        CHECK((fcntl(fd.get(), F_GETFL) & O_DIRECT) != 0);
}
