#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include <catch2/catch.hpp>

#include "images/page_reader.h"
#include "images/page_writer.h"
#include "test/unit/images/test_util.h"

using namespace criu;
using criu::test::TempDir;

namespace {

constexpr uint64_t kBase = 0x7f0000000000ull;

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// Page-aligned memory, so the writer's O_DIRECT no-copy path is taken.
struct Pages {
    explicit Pages(size_t n) : n(n) {
        void* m = nullptr;
        REQUIRE(::posix_memalign(&m, kPageSize, std::max<size_t>(n, 1) * kPageSize) == 0);
        p = static_cast<char*>(m);
    }
    ~Pages() { std::free(p); }
    char* page(size_t i) { return p + i * kPageSize; }
    size_t n;
    char* p;
};

// Page `i` of generation `gen`: compressible text mixed with some noise.
void fill_page(char* dst, uint64_t vaddr, int gen) {
    std::mt19937_64 rng(vaddr * 31 + gen);
    for (size_t k = 0; k < kPageSize; k += 8) {
        uint64_t v = (k % 64 == 0) ? rng() : (vaddr + k) ^ uint64_t(gen);
        std::memcpy(dst + k, &v, 8);
    }
}

ImageDir make_dir(const std::string& path, const std::string& parent = "") {
    auto d = ImageDir::create(path);
    REQUIRE(d);
    images::Inventory inv;
    inv.set_parent_dir(parent);
    REQUIRE(d->write_inventory(inv));
    return std::move(*d);
}

void check_range(PageReader& r, uint64_t vaddr, size_t nr, const std::function<void(char*, uint64_t)>& expect) {
    Pages got(nr), want(nr);
    auto st = r.read_range(vaddr, nr, got.p);
    INFO((st ? std::string("ok") : st.error().str()));
    REQUIRE(st);
    for (size_t i = 0; i < nr; i++)
        expect(want.page(i), vaddr + i * kPageSize);
    CHECK(std::memcmp(got.p, want.p, nr * kPageSize) == 0);
}

// A mixed layout: data, a hole, zeros right after data, more data, lazy data.
void write_layout(const ImageDir& d, PageWriterOptions opts, PageWriterStats* stats = nullptr) {
    auto w = PageWriter::create(d, 1, opts);
    REQUIRE(w);
    Pages a(300);
    for (size_t i = 0; i < 300; i++)
        fill_page(a.page(i), kBase + i * kPageSize, 1);
    REQUIRE(w->add_pages(kBase, a.p, 100));
    REQUIRE(w->add_pages(kBase + 100 * kPageSize, a.page(100), 200));  // contiguous: merges when raw
    REQUIRE(w->add_zero(kBase + 300 * kPageSize, 10));
    REQUIRE(w->add_zero(kBase + 310 * kPageSize, 6));  // merges
    std::string unaligned(3 * kPageSize + 1, '\0');
    for (size_t i = 0; i < 3; i++)
        fill_page(unaligned.data() + 1 + i * kPageSize, kBase + (400 + i) * kPageSize, 1);
    REQUIRE(w->add_pages(kBase + 400 * kPageSize, unaligned.data() + 1, 3));
    REQUIRE(w->add_pages(kBase + 403 * kPageSize, a.p, 1, /*lazy=*/true));
    REQUIRE(w->finish());
    if (stats)
        *stats = w->stats();
}

void check_layout(PageReader& r) {
    auto gen1 = [](char* dst, uint64_t va) { fill_page(dst, va, 1); };
    check_range(r, kBase, 300, gen1);
    check_range(r, kBase + 17 * kPageSize, 150, gen1);
    check_range(r, kBase + 300 * kPageSize, 16, [](char* dst, uint64_t) { std::memset(dst, 0, kPageSize); });
    check_range(r, kBase + 400 * kPageSize, 3, gen1);
    check_range(r, kBase + 403 * kPageSize, 1, [](char* dst, uint64_t) { fill_page(dst, kBase, 1); });
    Pages one(1);
    auto hole = r.read_range(kBase + 316 * kPageSize, 1, one.p);
    REQUIRE_FALSE(hole);
    CHECK(contains(hole.error().str(), "page 0x7f000013c000 is not in the image"));
    CHECK(r.count_pages(images::PE_PRESENT) == 304);
    CHECK(r.count_pages(images::PE_ZERO) == 16);
    CHECK(r.count_pages(images::PE_LAZY) == 1);
    // Whole entries through read_pages, and raw entries straight from the fd.
    REQUIRE(r.for_each_entry([&](const PageEntry& e) -> Status {
        Pages buf(e.nr_pages);
        TRY_VOID(r.read_pages(e, buf.p));
        if (auto loc = r.raw_location(e)) {
            Pages direct(e.nr_pages);
            CHECK(loc->length == e.size());
            CHECK(::pread(loc->fd, direct.p, loc->length, off_t(loc->offset)) == ssize_t(loc->length));
            CHECK(std::memcmp(direct.p, buf.p, e.size()) == 0);
        }
        return {};
    }));
}

void write_pagemap(const ImageDir& d, const images::PagemapHead& head, const std::vector<images::PagemapEntry>& es) {
    auto w = d.open_writer(ImageType::Pagemap, 1);
    REQUIRE(w);
    REQUIRE(w->write(head));
    for (const auto& e : es)
        REQUIRE(w->write(e));
    REQUIRE(w->close());
}

images::PagemapEntry entry(uint64_t vaddr, uint32_t nr, uint32_t flags, uint64_t off = 0, uint64_t size = 0) {
    images::PagemapEntry e;
    e.set_vaddr(vaddr);
    e.set_nr_pages(nr);
    e.set_flags(flags);
    e.set_offset(off);
    e.set_stored_size(size);
    return e;
}

}  // namespace

TEST_CASE("page store: raw round trip with O_DIRECT, merging and raw locations", "[page_store]") {
    TempDir tmp;  // /tmp: a disk filesystem here, so O_DIRECT is accepted
    auto d = make_dir(tmp.path());
    PageWriterStats st;
    write_layout(d, {}, &st);
    CHECK(st.direct_io);
    CHECK(st.pages_present == 304);
    CHECK(st.pages_zero == 16);
    CHECK(st.entries == 4);  // 300 merged, 16 zero merged, 3 (unaligned source), 1 lazy
    CHECK(st.pages_file_size == kPagesHeaderSize + 304 * kPageSize);
    auto r = PageReader::open(d, 1);
    REQUIRE(r);
    CHECK(r->entries().size() == 4);
    CHECK(r->head().nr_entries() == 4);
    check_layout(*r);
    struct stat sb;
    REQUIRE(::stat(tmp.file("pages-1.img").c_str(), &sb) == 0);
    CHECK(uint64_t(sb.st_size) == st.pages_file_size);
}

// tmpfs refused O_DIRECT before Linux 6.6; on older kernels this takes the fallback path.
TEST_CASE("page store: round trip on tmpfs", "[page_store]") {
    if (::access("/dev/shm", W_OK) != 0)
        return;
    TempDir tmp("/dev/shm");
    auto d = make_dir(tmp.path());
    PageWriterStats st;
    PageWriterOptions buffered;
    buffered.direct_io = false;
    write_layout(d, buffered, &st);
    CHECK_FALSE(st.direct_io);
    auto r = PageReader::open(d, 1);
    REQUIRE(r);
    check_layout(*r);
}

// A migration's source keeps each round's set only as the next round's parent: the pagemap
// and a pages file of the right size, with a hole where the data would be.
TEST_CASE("page store: a layout-only writer leaves a valid parent with no data written", "[page_store]") {
    TempDir tmp;
    auto a = make_dir(tmp.file("a"));
    PageWriterStats full;
    {
        PageWriterOptions o;
        o.layout_only = true;
        write_layout(a, o, &full);
    }
    CHECK(full.pages_present == 304);
    CHECK(full.entries == 4);
    CHECK(full.pages_file_size == kPagesHeaderSize + 304 * kPageSize);
    struct stat sb;
    REQUIRE(::stat(tmp.file("a/pages-1.img").c_str(), &sb) == 0);
    CHECK(uint64_t(sb.st_size) == full.pages_file_size);
    CHECK(uint64_t(sb.st_blocks) * 512 < 64 * 1024);  // the header's block, not 1.2 MiB of pages
    auto r = PageReader::open(a, 1);
    REQUIRE(r);
    CHECK(r->count_pages(images::PE_PRESENT) == 304);
    CHECK(r->count_pages(images::PE_ZERO) == 16);
    // The next set names it as parent: the chain validates as one written with the data.
    auto b = make_dir(tmp.file("b"), "../a");
    {
        auto w = PageWriter::create(b, 1);
        REQUIRE(w);
        Pages p(2);
        fill_page(p.page(0), kBase + 5 * kPageSize, 2);
        fill_page(p.page(1), kBase + 6 * kPageSize, 2);
        REQUIRE(w->add_parent(kBase, 5));
        REQUIRE(w->add_pages(kBase + 5 * kPageSize, p.p, 2));
        REQUIRE(w->add_parent(kBase + 7 * kPageSize, 293));
        REQUIRE(w->finish());
    }
    auto rb = PageReader::open(b, 1);
    REQUIRE(rb);
    check_range(*rb, kBase + 5 * kPageSize, 2, [](char* dst, uint64_t va) { fill_page(dst, va, 2); });
}

TEST_CASE("page store: zstd round trip, inline and on worker threads", "[page_store]") {
    for (unsigned threads : {0u, 2u}) {
        for (bool direct : {true, false}) {
            INFO("threads " << threads << " direct " << direct);
            TempDir tmp;
            auto d = make_dir(tmp.path());
            PageWriterOptions o;
            o.codec = images::CODEC_ZSTD;
            o.threads = threads;
            o.direct_io = direct;
            o.frame_pages = 16;
            PageWriterStats st;
            write_layout(d, o, &st);
            CHECK(st.bytes_stored < st.bytes_in);
            // Frames never merge: 7 + 13 frames for the two runs, zeros, 3 pages, 1 lazy page.
            CHECK(st.entries == 7 + 13 + 1 + 1 + 1);
            auto r = PageReader::open(d, 1);
            REQUIRE(r);
            CHECK(r->head().codec() == images::CODEC_ZSTD);
            CHECK_FALSE(r->raw_location(r->entries().front()));
            check_layout(*r);
        }
    }
}

TEST_CASE("page store: the writer refuses ranges out of order or out of bounds", "[page_store]") {
    TempDir tmp;
    auto d = make_dir(tmp.path());
    auto w = PageWriter::create(d, 1);
    REQUIRE(w);
    Pages p(2);
    REQUIRE(w->add_pages(kBase + 10 * kPageSize, p.p, 2));
    auto back = w->add_zero(kBase + 11 * kPageSize, 1);
    REQUIRE_FALSE(back);
    CHECK(contains(back.error().str(), "range at 0x7f000000b000 is below the end of the previous one"));
    CHECK_FALSE(w->add_parent(kBase + 100 * kPageSize + 1, 1));
    CHECK_FALSE(w->add_zero(kMaxUserAddress - kPageSize, 2));
    REQUIRE(w->finish());
    CHECK_FALSE(w->add_zero(kBase + 1000 * kPageSize, 1));
}

TEST_CASE("page store: a parent chain of three images resolves each page", "[page_store]") {
    TempDir tmp;
    // a: pages 0..31 generation 1.
    auto a = make_dir(tmp.file("a"));
    {
        auto w = PageWriter::create(a, 1);
        REQUIRE(w);
        Pages p(32);
        for (size_t i = 0; i < 32; i++)
            fill_page(p.page(i), kBase + i * kPageSize, 1);
        REQUIRE(w->add_pages(kBase, p.p, 32));
        REQUIRE(w->finish());
    }
    // b (zstd): 0..7 parent, 8..15 generation 2, 16..31 parent.
    auto b = make_dir(tmp.file("b"), "../a");
    {
        PageWriterOptions o;
        o.codec = images::CODEC_ZSTD;
        auto w = PageWriter::create(b, 1, o);
        REQUIRE(w);
        Pages p(8);
        for (size_t i = 0; i < 8; i++)
            fill_page(p.page(i), kBase + (8 + i) * kPageSize, 2);
        REQUIRE(w->add_parent(kBase, 8));
        REQUIRE(w->add_pages(kBase + 8 * kPageSize, p.p, 8));
        REQUIRE(w->add_parent(kBase + 16 * kPageSize, 16));
        REQUIRE(w->finish());
    }
    // c: 0..11 parent, 12..15 zero, 16..19 generation 3, 20..31 parent.
    auto c = make_dir(tmp.file("c"), "../b");
    {
        auto w = PageWriter::create(c, 1);
        REQUIRE(w);
        Pages p(4);
        for (size_t i = 0; i < 4; i++)
            fill_page(p.page(i), kBase + (16 + i) * kPageSize, 3);
        REQUIRE(w->add_parent(kBase, 12));
        REQUIRE(w->add_zero(kBase + 12 * kPageSize, 4));
        REQUIRE(w->add_pages(kBase + 16 * kPageSize, p.p, 4));
        REQUIRE(w->add_parent(kBase + 20 * kPageSize, 12));
        REQUIRE(w->finish());
    }
    auto r = PageReader::open(c, 1);
    REQUIRE(r);
    REQUIRE(r->parent());
    REQUIRE(r->parent()->parent());
    CHECK_FALSE(r->parent()->parent()->parent());
    check_range(*r, kBase, 32, [](char* dst, uint64_t va) {
        uint64_t i = (va - kBase) / kPageSize;
        if (i >= 12 && i < 16)
            std::memset(dst, 0, kPageSize);
        else
            fill_page(dst, va, i >= 16 && i < 20 ? 3 : (i >= 8 && i < 12 ? 2 : 1));
    });
    // One entry at a time, parent entries included.
    for (const auto& e : r->entries()) {
        Pages buf(e.nr_pages);
        REQUIRE(r->read_pages(e, buf.p));
    }
    // Without parents, parent pages cannot be read, and say so.
    auto alone = PageReader::open(c, 1, false);
    REQUIRE(alone);
    Pages one(1);
    auto st = alone->read_range(kBase, 1, one.p);
    REQUIRE_FALSE(st);
    CHECK(contains(st.error().str(), "page 0x7f0000000000 is in the parent image, which was not opened"));

    // d claims pages 32..33 are in the parent, which nobody has.
    auto dd = make_dir(tmp.file("d"), "../c");
    {
        auto w = PageWriter::create(dd, 1);
        REQUIRE(w);
        REQUIRE(w->add_parent(kBase + 30 * kPageSize, 4));
        REQUIRE(w->finish());
    }
    auto bad = PageReader::open(dd, 1);
    REQUIRE_FALSE(bad);
    CHECK(contains(bad.error().str(), "entry 1: page 0x7f0000020000 is marked as in the parent image, but " +
                                          tmp.file("d/../c/pagemap-1.img") + " lacks it"));

    // The top of the chain (a) has no parent at all.
    auto top = make_dir(tmp.file("e"));
    {
        auto w = PageWriter::create(top, 1);
        REQUIRE(w);
        REQUIRE(w->add_parent(kBase, 1));
        REQUIRE(w->finish());
    }
    auto orphan = PageReader::open(top, 1);
    REQUIRE_FALSE(orphan);
    CHECK(contains(orphan.error().str(), "refers to a parent image, but " + tmp.file("e") + " has none"));
}

TEST_CASE("page store: hostile pagemaps are refused before any page is read", "[page_store]") {
    TempDir tmp;
    auto d = make_dir(tmp.path());
    {
        auto w = PageWriter::create(d, 1);
        REQUIRE(w);
        Pages p(4);
        REQUIRE(w->add_pages(kBase, p.p, 4));
        REQUIRE(w->finish());
    }
    auto good = PageReader::open(d, 1);
    REQUIRE(good);
    images::PagemapHead head = good->head();
    const uint64_t size = head.pages_file_size();
    const uint32_t P = images::PE_PRESENT;
    std::string map = tmp.file("pagemap-1.img");

    struct Case {
        const char* name;
        std::vector<images::PagemapEntry> entries;
        std::string expect;
        std::function<void(images::PagemapHead&)> tweak;
    };
    std::vector<Case> cases = {
        {"overlap", {entry(kBase, 2, P, 4096, 8192), entry(kBase + kPageSize, 2, P, 12288, 8192)},
         "entry 2 (vaddr 0x7f0000001000): overlaps or precedes the previous entry, which ends at 0x7f0000002000"},
        {"unsorted", {entry(kBase + 8 * kPageSize, 1, P, 4096, 4096), entry(kBase, 1, P, 8192, 4096)},
         "entry 2 (vaddr 0x7f0000000000): overlaps or precedes"},
        {"offset past end", {entry(kBase, 1, P, size, 4096)}, "is past the end of the pages file"},
        {"size past end", {entry(kBase, 5, P, 4096, 5 * 4096)}, "is past the end of the pages file"},
        {"wrapping offset", {entry(kBase, 1, P, ~0ull - 100, 4096)}, "is past the end of the pages file"},
        {"offset in header", {entry(kBase, 1, P, 0, 4096)}, "is inside the pages file header"},
        {"huge nr_pages", {entry(kMaxUserAddress - (1ull << 40), 0xffffffffu, images::PE_ZERO)},
         "reach past the end of user space"},
        {"huge raw nr_pages", {entry(0, 0xfffffff0u, P, 4096, 4096)}, "raw size 4096 is not 4294967280 pages"},
        {"unaligned vaddr", {entry(kBase + 12, 1, images::PE_ZERO)}, "address is not page aligned"},
        {"zero pages", {entry(kBase, 0, images::PE_ZERO)}, "zero pages"},
        {"unknown flag", {entry(kBase, 1, 0x40)}, "unknown flags 0x40"},
        {"two kinds", {entry(kBase, 1, images::PE_ZERO | images::PE_PARENT)}, "exactly one of present"},
        {"no kind", {entry(kBase, 1, 0)}, "exactly one of present"},
        {"lazy zero", {entry(kBase, 1, images::PE_ZERO | images::PE_LAZY)}, "lazy pages must be present"},
        {"zero with data", {entry(kBase, 1, images::PE_ZERO, 4096, 4096)}, "entry without data has offset 4096"},
        {"unaligned raw offset", {entry(kBase, 1, P, 4097, 4096)}, "raw data offset 4097 is not page aligned"},
        {"count short", {entry(kBase, 1, P, 4096, 4096)}, "truncated: 1 entries, the head announces 2",
         [](images::PagemapHead& h) { h.set_nr_entries(2); }},
        {"count long", {entry(kBase, 1, P, 4096, 4096), entry(kBase + kPageSize, 1, P, 8192, 4096)},
         "more entries than the 1 the head announces", [](images::PagemapHead& h) { h.set_nr_entries(1); }},
        {"escaping pages file", {}, "pages file \"../pages-1.img\" is not pages-1.img",
         [](images::PagemapHead& h) { h.set_pages_file("../pages-1.img"); }},
        {"pages file size", {}, "says 123", [](images::PagemapHead& h) { h.set_pages_file_size(123); }},
        {"page size", {}, "page size 65536 is not supported", [](images::PagemapHead& h) { h.set_page_size(65536); }},
        {"codec mismatch", {}, "codec raw differs from zstd",
         [](images::PagemapHead& h) { h.set_codec(images::CODEC_ZSTD); }},
        {"unknown codec", {}, "unknown page codec 9", [](images::PagemapHead& h) { h.set_codec(PageCodec(9)); }},
    };
    for (auto& c : cases) {
        INFO(c.name);
        images::PagemapHead h = head;
        h.set_nr_entries(c.entries.size());
        if (c.tweak)
            c.tweak(h);
        write_pagemap(d, h, c.entries);
        auto r = PageReader::open(d, 1);
        REQUIRE_FALSE(r);
        INFO(r.error().str());
        CHECK(contains(r.error().str(), map));
        CHECK(contains(r.error().str(), c.expect));
    }
}

TEST_CASE("page store: zstd entries are capped in pages and frame size", "[page_store]") {
    auto big = validate_page_entry(entry(kBase, 100000, images::PE_PRESENT, 4096, 4096), images::CODEC_ZSTD, 0,
                                   1 << 20, "m: entry 1");
    REQUIRE_FALSE(big);
    CHECK(contains(big.error().str(), "m: entry 1 (vaddr 0x7f0000000000): 100000 pages in one zstd frame exceed the "
                                      "limit of 1024"));
    auto fat = validate_page_entry(entry(kBase, 1, images::PE_PRESENT, 4096, 900000), images::CODEC_ZSTD, 0, 1 << 20,
                                   "m: entry 1");
    REQUIRE_FALSE(fat);
    CHECK(contains(fat.error().str(), "zstd frame size 900000 is impossible for 1 pages"));
    auto ok = validate_page_entry(entry(kBase, 1024, images::PE_PRESENT, 4097, 5000), images::CODEC_ZSTD, 0, 1 << 20,
                                  "m: entry 1");
    CHECK(ok);
}

TEST_CASE("page store: corrupt pages files and frames are refused", "[page_store]") {
    TempDir tmp;
    auto d = make_dir(tmp.path());
    PageWriterOptions o;
    o.codec = images::CODEC_ZSTD;
    o.threads = 0;
    {
        auto w = PageWriter::create(d, 1, o);
        REQUIRE(w);
        Pages p(8);
        for (size_t i = 0; i < 8; i++)
            fill_page(p.page(i), kBase + i * kPageSize, 1);
        REQUIRE(w->add_pages(kBase, p.p, 8));
        REQUIRE(w->finish());
    }
    std::string pages = tmp.file("pages-1.img");
    std::string good = test::read_file(pages);

    std::string bad = good;
    bad[0] ^= 1;
    test::write_file(pages, bad);
    auto r = PageReader::open(d, 1);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error().str(), pages + ": not a pages file (magic"));

    bad = good;
    bad[12] = 0;  // codec byte: covered by the header checksum
    test::write_file(pages, bad);
    r = PageReader::open(d, 1);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error().str(), pages + ": header checksum mismatch"));

    // A damaged frame opens (frames are checked when decoded) but does not decode.
    bad = good;
    bad[kPagesHeaderSize + 20] ^= 0x5a;
    bad[kPagesHeaderSize + 40] ^= 0x5a;
    test::write_file(pages, bad);
    r = PageReader::open(d, 1);
    REQUIRE(r);
    Pages out(8);
    // Frames carry zstd's content checksum: a flip anywhere is caught, never decoded to other bytes.
    auto st = r->read_range(kBase, 8, out.p);
    REQUIRE_FALSE(st);
    CHECK(contains(st.error().str(), pages + ": frame for 0x7f0000000000"));
}
