#include <cstring>
#include <memory>
#include <random>

#include <catch2/catch.hpp>
#include <google/protobuf/util/message_differencer.h>

#include "images/image_io.h"
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/inventory.pb.h"
#include "proto/mm.pb.h"
#include "proto/pagemap.pb.h"
#include "proto/pstree.pb.h"
#include "proto/stats.pb.h"
#include "test/unit/images/test_util.h"

using namespace criu;
using criu::test::TempDir;
using google::protobuf::Message;

namespace {

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// Writes `n` PstreeEntry records and returns the file's bytes.
std::string small_pstree(const std::string& path, int n) {
    auto w = ImageWriter::create(path, ImageType::Pstree);
    REQUIRE(w);
    for (int i = 0; i < n; i++) {
        images::PstreeEntry e;
        e.set_pid(100 + i);
        e.set_ppid(i ? 100 : 99);  // every record the same size
        e.add_threads(100 + i);
        REQUIRE(w->write(e));
    }
    REQUIRE(w->close());
    return test::read_file(path);
}

Expected<std::vector<images::PstreeEntry>> read_pstree(const std::string& path) {
    auto r = TRY(ImageReader::open(path, ImageType::Pstree));
    return r.read_all<images::PstreeEntry>();
}

void put_u32(std::string& s, size_t at, uint32_t v) { std::memcpy(s.data() + at, &v, 4); }

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value, hardware and table agree", "[image_io]") {
    CHECK(crc32c("123456789", 9) == 0xE3069283u);
    CHECK(detail::crc32c_table("123456789", 9, 0) == 0xE3069283u);
    CHECK(crc32c("", 0) == 0);
    // Checksumming in pieces equals checksumming at once.
    CHECK(crc32c("6789", 4, crc32c("12345", 5)) == 0xE3069283u);
    std::mt19937 rng(7);
    std::string buf(5000, '\0');
    for (auto& c : buf)
        c = char(rng());
    for (size_t len : {0, 1, 7, 8, 9, 63, 64, 65, 4095, 5000}) {
        uint32_t t = detail::crc32c_table(buf.data() + 1, std::min<size_t>(len, 4999), 0x1234);
        if (detail::crc32c_hw_available())
            CHECK(detail::crc32c_hw(buf.data() + 1, std::min<size_t>(len, 4999), 0x1234) == t);
        CHECK(crc32c(buf.data() + 1, std::min<size_t>(len, 4999), 0x1234) == t);
    }
}

TEST_CASE("image type table: distinct magics, names map back", "[image_io]") {
    std::set<uint32_t> magics;
    for (const auto& t : all_image_types()) {
        CHECK(magics.insert(t.magic).second);
        CHECK(&image_type_info(t.type) == &t);
        std::string name = image_file_name(t.type, 42);
        const auto* back = image_type_by_name(name);
        REQUIRE(back);
        CHECK(back->type == t.type);
    }
    CHECK(image_file_name(ImageType::Core, 42) == "core-42.img");
    CHECK(image_file_name(ImageType::Inventory) == "inventory.img");
    CHECK(image_type_by_name("core-.img") == nullptr);
    CHECK(image_type_by_name("core-4x.img") == nullptr);
    CHECK(image_type_by_name("core.img") == nullptr);
    CHECK(image_type_by_name("pages-1.img") == nullptr);
    CHECK(image_type_by_name("inventory-3.img") == nullptr);
    CHECK(image_type_by_name("stats-dump.img")->type == ImageType::DumpStats);
}

TEST_CASE("every message type round-trips with non-default values", "[image_io]") {
    TempDir dir;
    struct Case {
        ImageType type;
        std::unique_ptr<Message> proto;
    };
    std::vector<Case> cases;
    cases.push_back({ImageType::Inventory, std::make_unique<images::Inventory>()});
    cases.push_back({ImageType::Pstree, std::make_unique<images::PstreeEntry>()});
    cases.push_back({ImageType::Core, std::make_unique<images::TaskCore>()});
    cases.push_back({ImageType::Mm, std::make_unique<images::MmInfo>()});
    cases.push_back({ImageType::Pagemap, std::make_unique<images::PagemapHead>()});
    cases.push_back({ImageType::Pagemap, std::make_unique<images::PagemapEntry>()});
    cases.push_back({ImageType::Files, std::make_unique<images::FileEntry>()});
    cases.push_back({ImageType::Fdinfo, std::make_unique<images::FdEntry>()});
    cases.push_back({ImageType::PipeData, std::make_unique<images::PipeData>()});
    cases.push_back({ImageType::Fs, std::make_unique<images::FsInfo>()});
    cases.push_back({ImageType::DumpStats, std::make_unique<images::DumpStats>()});
    cases.push_back({ImageType::RestoreStats, std::make_unique<images::RestoreStats>()});
    // The sub-messages too, on their own (a oneof keeps only one member when filled whole).
    cases.push_back({ImageType::Files, std::make_unique<images::RegFile>()});
    cases.push_back({ImageType::Files, std::make_unique<images::PipeFile>()});
    cases.push_back({ImageType::Files, std::make_unique<images::CharDev>()});
    cases.push_back({ImageType::Files, std::make_unique<images::TtyFile>()});

    int n = 0;
    for (auto& c : cases) {
        INFO(c.proto->GetTypeName());
        std::string path = dir.file(fmt::format("img-{}.img", n++));
        std::vector<std::unique_ptr<Message>> written;
        {
            auto w = ImageWriter::create(path, c.type);
            REQUIRE(w);
            for (uint32_t seed = 1; seed <= 3; seed++) {
                written.emplace_back(c.proto->New());
                test::fill_message(*written.back(), seed);
                REQUIRE(w->write(*written.back()));
            }
            REQUIRE(w->close(true));
        }
        auto r = ImageReader::open(path, c.type);
        REQUIRE(r);
        for (auto& want : written) {
            std::unique_ptr<Message> got(c.proto->New());
            auto ok = r->read(*got);
            REQUIRE(ok);
            REQUIRE(*ok);
            CHECK(google::protobuf::util::MessageDifferencer::Equals(*want, *got));
            CHECK(got->ByteSizeLong() > 0);
        }
        std::unique_ptr<Message> extra(c.proto->New());
        auto end = r->read(*extra);
        REQUIRE(end);
        CHECK_FALSE(*end);
        CHECK(r->records_read() == 3);
    }
}

TEST_CASE("large records are framed and read through the buffer", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pipes-data.img");
    images::PipeData big;
    big.set_pipe_ino(9);
    big.set_data(std::string(3 << 20, 'x'));  // larger than the reader's chunk and the writer's
    {
        auto w = ImageWriter::create(path, ImageType::PipeData);
        REQUIRE(w);
        for (int i = 0; i < 3; i++)
            REQUIRE(w->write(big));
    }  // the destructor flushes
    auto r = ImageReader::open(path, ImageType::PipeData);
    REQUIRE(r);
    auto all = r->read_all<images::PipeData>();
    REQUIRE(all);
    REQUIRE(all->size() == 3);
    CHECK((*all)[2].data() == big.data());
}

TEST_CASE("a flipped byte anywhere in a payload is a checksum mismatch naming the record", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 3);
    size_t rec_size = (good.size() - 16 - 8) / 3;  // 8: the end marker
    for (size_t off = 16; off < good.size() - 8; off++) {
        size_t in_rec = (off - 16) % rec_size;
        if (in_rec < 8)
            continue;  // length/crc fields are covered by the tests below
        std::string bad = good;
        bad[off] ^= 0x40;
        test::write_file(path, bad);
        auto res = read_pstree(path);
        REQUIRE_FALSE(res);
        std::string msg = res.error().str();
        INFO(msg);
        CHECK(contains(msg, path + ": record " + std::to_string((off - 16) / rec_size + 1) + ": checksum mismatch"));
        CHECK(contains(msg, "stored 0x"));
        CHECK(contains(msg, "computed 0x"));
    }
}

TEST_CASE("a file truncated at any offset is refused, also between records", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 3);
    size_t body = good.size() - 8;  // records end where the 8-byte end marker starts
    size_t rec_size = (body - 16) / 3;
    for (size_t len = 0; len < good.size(); len++) {
        INFO("truncated to " << len);
        test::write_file(path, good.substr(0, len));
        auto res = read_pstree(path);
        REQUIRE_FALSE(res);
        std::string msg = res.error().str();
        INFO(msg);
        if (len < 16) {
            CHECK(contains(msg, path + ": not a pstree image: " + std::to_string(len) + " bytes"));
            continue;
        }
        if (len > body) {
            // Cut inside the end marker.
            CHECK(contains(msg, path + ": record 4: truncated: " + std::to_string(len - body) +
                                    " bytes left, a record header needs 8"));
            continue;
        }
        if ((len - 16) % rec_size == 0) {
            // A cut at a record boundary would be a well-formed shorter file but for the end marker.
            CHECK(contains(msg, path + ": truncated after record " + std::to_string((len - 16) / rec_size) +
                                    ": the end marker is missing"));
            continue;
        }
        size_t rec = (len - 16) / rec_size + 1;
        CHECK(contains(msg, path + ": record " + std::to_string(rec) + ": truncated: "));
        size_t left = len - 16 - (rec - 1) * rec_size;
        if (left >= 8)
            CHECK(contains(msg, fmt::format("header says {} bytes, {} left", rec_size - 8, left - 8)));
        else
            CHECK(contains(msg, fmt::format("{} bytes left, a record header needs 8", left)));
    }
}

TEST_CASE("a wrong record count or garbage after the end marker is refused", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 2);
    std::string bad = good;
    put_u32(bad, good.size() - 4, 5);
    test::write_file(path, bad);
    auto res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(), path + ": end marker counts 5 records, 2 were read"));

    test::write_file(path, good + "xyz");
    res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(), path + ": 3 bytes of trailing garbage after the end marker"));
}

TEST_CASE("length fields past the cap or past the file are refused before allocating", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 2);
    size_t rec_size = (good.size() - 16 - 8) / 2;  // 8: the end marker

    std::string bad = good;
    put_u32(bad, 16 + rec_size, 0xfffffff0u);
    test::write_file(path, bad);
    auto res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(),
                   path + ": record 2: length 4294967280 exceeds the limit of " + std::to_string(kMaxRecordSize)));

    bad = good;
    put_u32(bad, 16, 812);
    test::write_file(path, bad);
    res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(),
                   fmt::format("{}: record 1: truncated: header says 812 bytes, {} left", path, good.size() - 24)));
}

TEST_CASE("wrong magic, wrong major and unknown flags are refused by the header check", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 1);
    uint32_t pstree_magic = image_type_info(ImageType::Pstree).magic;

    auto r = ImageReader::open(path, ImageType::Core);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error().str(), fmt::format("{}: not a core image (magic {:#010x} is that of a pstree image",
                                                path, pstree_magic)));

    std::string bad = good;
    put_u32(bad, 0, 0xdeadbeef);
    test::write_file(path, bad);
    auto res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(),
                   fmt::format("{}: not a pstree image (magic 0xdeadbeef, expected {:#010x})", path, pstree_magic)));

    bad = good;
    put_u32(bad, 4, 7);
    test::write_file(path, bad);
    res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(), path + ": image format 7.0 is not supported (this criu reads 1.x)"));

    // A newer minor is fine: minors only add fields.
    bad = good;
    put_u32(bad, 8, 9);
    test::write_file(path, bad);
    auto ok = ImageReader::open(path, ImageType::Pstree);
    REQUIRE(ok);
    CHECK(ok->format_minor() == 9);

    bad = good;
    put_u32(bad, 12, 4);
    test::write_file(path, bad);
    res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(), path + ": unknown header flags 0x4"));
}

TEST_CASE("a checksummed payload that is not the message is refused", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 1);
    // Field 5 with wire type 7 does not exist in protobuf.
    std::string payload = "\x2f\x01\x02";
    std::string bad = good.substr(0, 16);
    bad.resize(24);
    put_u32(bad, 16, uint32_t(payload.size()));
    put_u32(bad, 20, crc32c(payload.data(), payload.size()));
    bad += payload;
    test::write_file(path, bad);
    auto res = read_pstree(path);
    REQUIRE_FALSE(res);
    CHECK(contains(res.error().str(), path + ": record 1: 3 bytes do not parse as criu.images.PstreeEntry"));
}

TEST_CASE("an in-memory image reads like a file", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("pstree.img");
    std::string good = small_pstree(path, 4);
    auto r = ImageReader::from_buffer(good, "stream", ImageType::Pstree);
    REQUIRE(r);
    auto all = r->read_all<images::PstreeEntry>();
    REQUIRE(all);
    CHECK(all->size() == 4);
    auto cut = ImageReader::from_buffer(good.substr(0, good.size() - 9), "stream", ImageType::Pstree);
    REQUIRE(cut);
    auto bad = cut->read_all<images::PstreeEntry>();
    REQUIRE_FALSE(bad);
    CHECK(contains(bad.error().str(), "stream: record 4: truncated"));
}

TEST_CASE("read_one reports a missing record", "[image_io]") {
    TempDir dir;
    std::string path = dir.file("core-1.img");
    {
        auto w = ImageWriter::create(path, ImageType::Core);
        REQUIRE(w);
        REQUIRE(w->close());
    }
    auto r = ImageReader::open(path, ImageType::Core);
    REQUIRE(r);
    auto core = r->read_one<images::TaskCore>();
    REQUIRE_FALSE(core);
    CHECK(contains(core.error().str(), path + ": expected a record, found end of file"));
}
