#include <cstring>
#include <random>
#include <vector>

#include <catch2/catch.hpp>
#include <zstd.h>

#include "images/page_reader.h"
#include "images/page_writer.h"
#include "images/zstd_stored.h"
#include "test/unit/images/test_util.h"

using namespace criu;
using criu::test::TempDir;

namespace {

std::vector<char> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<char> v(n);
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x = rng();
        std::memcpy(v.data() + i, &x, 8);
    }
    for (size_t i = n / 8 * 8; i < n; ++i)
        v[i] = char(rng());
    return v;
}

}  // namespace

TEST_CASE("zstd stored frames: xxh64 matches the checksum zstd itself writes", "[zstd_stored]") {
    CHECK(xxh64("", 0) == 0xEF46DB3751D8E999ull);  // the published value for empty input
    // zstd's content checksum is the low 32 bits of XXH64 of the content: compare with what
    // libzstd writes for inputs that exercise every tail length of the hash.
    for (size_t len : {1ul, 3ul, 4ul, 7ul, 8ul, 31ul, 32ul, 33ul, 100ul, 4096ul, 70001ul}) {
        INFO("length " << len);
        auto in = random_bytes(len, len);
        std::vector<char> z(ZSTD_compressBound(len));
        ZSTD_CCtx* c = ZSTD_createCCtx();
        REQUIRE(c);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        size_t n = ZSTD_compress2(c, z.data(), z.size(), in.data(), len);
        ZSTD_freeCCtx(c);
        REQUIRE_FALSE(ZSTD_isError(n));
        uint32_t stored;
        std::memcpy(&stored, z.data() + n - 4, 4);
        CHECK(stored == uint32_t(xxh64(in.data(), len)));
    }
}

TEST_CASE("zstd stored frames: any zstd decoder reads them back, and checks them", "[zstd_stored]") {
    for (size_t len : {0ul, 1ul, 4096ul, 131072ul, 131073ul, 1048576ul, 4194304ul}) {
        INFO("length " << len);
        auto in = random_bytes(len, 7 + len);
        std::vector<char> frame(len + zstd_stored_overhead(len));
        CHECK(zstd_stored_frame(in.data(), len, frame.data()) == frame.size());
        CHECK(frame.size() <= ZSTD_compressBound(len) + 4);
        CHECK(ZSTD_getFrameContentSize(frame.data(), frame.size()) == len);
        CHECK(ZSTD_findFrameCompressedSize(frame.data(), frame.size()) == frame.size());
        std::vector<char> out(len + 1);
        size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
        REQUIRE_FALSE(ZSTD_isError(n));
        REQUIRE(n == len);
        CHECK(std::memcmp(out.data(), in.data(), len) == 0);
        if (len > 0) {
            // A flipped content byte fails the checksum instead of decoding to other bytes.
            frame[frame.size() / 2] ^= 1;
            CHECK(ZSTD_isError(ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size())));
        }
    }
}

TEST_CASE("zstd stored frames: the writer stores random frames and compresses the rest", "[zstd_stored]") {
    TempDir tmp;
    auto d = ImageDir::create(tmp.path());
    REQUIRE(d);
    REQUIRE(d->write_inventory(images::Inventory{}));
    constexpr uint64_t kBase = 0x7f0000000000ull;
    constexpr size_t kPages = 1024;  // four 1 MiB frames: random, text, random, text
    void* m = nullptr;
    REQUIRE(::posix_memalign(&m, kPageSize, kPages * kPageSize) == 0);
    std::unique_ptr<char, decltype(&std::free)> mem(static_cast<char*>(m), &std::free);
    auto rnd = random_bytes(kPages * kPageSize, 99);
    for (size_t f = 0; f < 4; ++f) {
        char* at = mem.get() + f * 256 * kPageSize;
        if (f % 2 == 0)
            std::memcpy(at, rnd.data() + f * 256 * kPageSize, 256 * kPageSize);
        else
            for (size_t i = 0; i < 256 * kPageSize; ++i)
                at[i] = "the quick brown fox jumps over the lazy dog "[i % 44] ^ char(i >> 12);
    }
    for (unsigned threads : {0u, 2u}) {
        INFO("threads " << threads);
        PageWriterOptions o;
        o.codec = images::CODEC_ZSTD;
        o.threads = threads;
        auto w = PageWriter::create(*d, 1, o);
        REQUIRE(w);
        REQUIRE(w->add_pages(kBase, mem.get(), kPages));
        REQUIRE(w->finish());
        // The random frames are stored (1 MiB + 37 bytes each), the text frames shrink.
        CHECK(w->stats().bytes_stored > 2 * 256 * kPageSize);
        CHECK(w->stats().bytes_stored < 2 * 256 * kPageSize + 2 * zstd_stored_overhead(256 * kPageSize) + 64 * 1024);
        auto r = PageReader::open(*d, 1);
        REQUIRE(r);
        std::vector<char> back(kPages * kPageSize);
        auto st = r->read_range(kBase, kPages, back.data());
        INFO((st ? std::string("ok") : st.error().str()));
        REQUIRE(st);
        CHECK(std::memcmp(back.data(), mem.get(), kPages * kPageSize) == 0);
    }
}
