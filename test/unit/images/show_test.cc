#include <cstring>

#include <catch2/catch.hpp>

#include "images/image_dir.h"
#include "images/page_writer.h"
#include "images/show.h"
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/pstree.pb.h"
#include "test/unit/images/test_util.h"

using namespace criu;
using criu::test::TempDir;

namespace {

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

void build_image_set(const TempDir& tmp) {
    auto d = ImageDir::create(tmp.path());
    REQUIRE(d);
    images::Inventory inv;
    inv.set_root_pid(42);
    inv.set_tool_version("criu \"quoted\"\n");
    REQUIRE(d->write_inventory(inv));
    {
        auto w = d->open_writer(ImageType::Pstree);
        REQUIRE(w);
        images::PstreeEntry e;
        e.set_pid(42);
        e.add_threads(42);
        e.add_threads(43);
        REQUIRE(w->write(e));
    }
    {
        auto w = d->open_writer(ImageType::Core, 42);
        REQUIRE(w);
        images::TaskCore core;
        test::fill_message(core, 5);
        core.mutable_threads(0)->set_gpregs(std::string(27 * 8, '\x11'));
        REQUIRE(w->write(core));
    }
    {
        auto w = d->open_writer(ImageType::PipeData);
        REQUIRE(w);
        images::PipeData pd;
        pd.set_data(std::string("\x00\x01\xff binary", 10));
        REQUIRE(w->write(pd));
    }
    std::vector<char> page(3 * kPageSize, 'p');
    for (auto codec : {images::CODEC_RAW, images::CODEC_ZSTD}) {
        PageWriterOptions o;
        o.codec = codec;
        auto w = PageWriter::create(*d, codec == images::CODEC_RAW ? 42 : 43, o);
        REQUIRE(w);
        REQUIRE(w->add_pages(0x400000, page.data(), 3));
        REQUIRE(w->add_zero(0x403000, 5));
        REQUIRE(w->finish());
    }
    test::write_file(tmp.file("notes.txt"), "not an image");
    test::write_file(tmp.file("odd-\xff\x01name"), "x");
    // A damaged image: the listing goes on and says what is wrong.
    test::write_file(tmp.file("mm-42.img"), std::string("CRMM\x01\x00\x00\x00", 8));
}

}  // namespace

TEST_CASE("show: a directory is one valid JSON document", "[show]") {
    TempDir tmp;
    build_image_set(tmp);
    auto js = show_path_json(tmp.path(), true);
    REQUIRE(js);
    INFO(*js);
    CHECK(test::json_error(*js) == "");
    CHECK(js->starts_with("{\"dir\":\"" + tmp.path() + "\",\"images\":["));
    CHECK(contains(*js, R"({"file":"core-42.img","type":"core","records":[{"pid":)"));
    CHECK(contains(*js, R"("tool_version":"criu \"quoted\"\n")"));
    CHECK(contains(*js, R"("registers":[{"tid":)"));
    CHECK(contains(*js, R"("rip":"0x1111111111111111")"));
    CHECK(contains(*js, R"({"file":"notes.txt","type":"unknown"})"));
    CHECK(contains(*js, R"({"file":"odd-\ufffd\u0001name","type":"unknown"})"));
    CHECK(contains(*js, R"({"file":"pages-42.img","type":"pages","size":16384,"format":"1.0","codec":"raw","pages":3})"));
    CHECK(contains(*js, R"("codec":"zstd","pages":3,"frames":1})"));
    CHECK(contains(*js, R"("totals":{"entries":2,"present_pages":3,"parent_pages":0,"zero_pages":5,"lazy_pages":0,)"));
    CHECK(contains(*js, R"("check":"ok")"));
    CHECK(contains(*js, R"("data":"AAH/IGJpbmFyeQ==")"));  // bytes are base64
    CHECK(contains(*js, R"({"file":"mm-42.img","type":"mm","records":[],"error":")"));
    CHECK(contains(*js, "not a mm image: 8 bytes is too short"));
}

TEST_CASE("show: a single file, and a broken single file is an error", "[show]") {
    TempDir tmp;
    build_image_set(tmp);
    auto js = show_path_json(tmp.file("pstree.img"));
    REQUIRE(js);
    CHECK(test::json_error(*js) == "");
    CHECK(*js == R"({"file":"pstree.img","type":"pstree","records":[{"pid":42,"ppid":0,"pgid":0,"sid":0,)"
                 R"("threads":[42,43],"zombie":false,"exit_code":0,"comm":"","shares_files_with_parent":false,)"
                 R"("shares_fs_with_parent":false}]})");
    auto pm = show_path_json(tmp.file("pagemap-43.img"));
    REQUIRE(pm);
    CHECK(test::json_error(*pm) == "");
    CHECK(contains(*pm, R"("codec":"CODEC_ZSTD","pages_file":"pages-43.img")"));

    auto bad = show_path_json(tmp.file("mm-42.img"));
    REQUIRE_FALSE(bad);
    CHECK(contains(bad.error().str(), tmp.file("mm-42.img") + ": not a mm image"));
    auto unknown = show_path_json(tmp.file("notes.txt"));
    REQUIRE_FALSE(unknown);
    auto missing = show_path_json(tmp.file("nope"));
    REQUIRE_FALSE(missing);
    CHECK(contains(missing.error().str(), tmp.file("nope") + ": cannot stat"));
}

TEST_CASE("json checker used by these tests rejects invalid documents", "[show]") {
    CHECK(test::json_error(R"({"a":[1,2.5e3,-0,true,false,null,"x\u00e9"]})") == "");
    CHECK(test::json_error("{\"a\":1,}") != "");
    CHECK(test::json_error("[1 2]") != "");
    CHECK(test::json_error("\"tab\there\"") != "");
    CHECK(test::json_error("01") != "");
    CHECK(test::json_error("{} x") != "");
    CHECK(test::json_error("{\"a\"}") != "");
}
