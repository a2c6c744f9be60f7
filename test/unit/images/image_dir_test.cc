#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "images/image_dir.h"
#include "proto/core.pb.h"
#include "test/unit/images/test_util.h"

using namespace criu;
using criu::test::TempDir;

namespace {

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

ImageDir make_dir(const std::string& path, const std::string& parent) {
    auto d = ImageDir::create(path);
    REQUIRE(d);
    images::Inventory inv;
    inv.set_root_pid(1);
    inv.set_parent_dir(parent);
    REQUIRE(d->write_inventory(inv));
    return std::move(*d);
}

}  // namespace

TEST_CASE("image dir: create, write and read images by type and id, list them", "[image_dir]") {
    TempDir tmp;
    auto d = ImageDir::create(tmp.file("dump"));
    REQUIRE(d);
    for (int pid : {42, 7, 1000}) {
        auto w = d->open_writer(ImageType::Core, pid);
        REQUIRE(w);
        images::TaskCore core;
        core.set_pid(pid);
        REQUIRE(w->write(core));
        REQUIRE(w->close());
    }
    test::write_file(tmp.file("dump/notes.txt"), "x");
    ::mkdir(tmp.file("dump/subdir").c_str(), 0700);

    auto files = d->list_files();
    REQUIRE(files);
    CHECK(*files == std::vector<std::string>{"core-1000.img", "core-42.img", "core-7.img", "notes.txt"});
    auto ids = d->list_ids(ImageType::Core);
    REQUIRE(ids);
    CHECK(*ids == std::vector<int64_t>{7, 42, 1000});

    auto r = d->open_reader(ImageType::Core, 42);
    REQUIRE(r);
    CHECK(r->path() == tmp.file("dump/core-42.img"));
    auto core = r->read_one<images::TaskCore>();
    REQUIRE(core);
    CHECK(core->pid() == 42);

    CHECK(*d->has(ImageType::Core, 7));
    CHECK_FALSE(*d->has(ImageType::Core, 8));
    auto missing = d->open_reader(ImageType::Mm, 42);
    REQUIRE_FALSE(missing);
    CHECK(contains(missing.error().str(), tmp.file("dump/mm-42.img") + ": cannot open image"));

    auto nodir = ImageDir::open(tmp.file("nope"));
    REQUIRE_FALSE(nodir);
    CHECK(contains(nodir.error().str(), tmp.file("nope") + ": cannot open image directory"));
}

TEST_CASE("image dir: inventory round-trips and a foreign major is refused", "[image_dir]") {
    TempDir tmp;
    auto d = ImageDir::create(tmp.path());
    REQUIRE(d);
    images::Inventory inv;
    inv.set_root_pid(4211);
    inv.set_kernel_release("6.14.0");
    inv.set_format_major(99);  // overwritten by write_inventory
    REQUIRE(d->write_inventory(inv));
    auto back = d->read_inventory();
    REQUIRE(back);
    CHECK(back->root_pid() == 4211);
    CHECK(back->format_major() == kFormatMajor);
    CHECK(back->format_minor() == kFormatMinor);

    {
        auto w = d->open_writer(ImageType::Inventory);
        REQUIRE(w);
        inv.set_format_major(2);
        inv.set_format_minor(3);
        REQUIRE(w->write(inv));
    }
    auto bad = d->read_inventory();
    REQUIRE_FALSE(bad);
    CHECK(contains(bad.error().str(),
                   tmp.file("inventory.img") + ": image set format 2.3 is not supported (this criu reads 1.x)"));

    {
        auto w = d->open_writer(ImageType::Inventory);
        REQUIRE(w);
        inv.set_format_major(kFormatMajor);
        REQUIRE(w->write(inv));
        REQUIRE(w->write(inv));
    }
    bad = d->read_inventory();
    REQUIRE_FALSE(bad);
    CHECK(contains(bad.error().str(), "more than one inventory record"));
}

TEST_CASE("image dir: parent chain resolves relative and absolute links", "[image_dir]") {
    TempDir tmp;
    make_dir(tmp.file("a"), "");
    make_dir(tmp.file("b"), "../a");
    make_dir(tmp.file("c"), tmp.file("b"));
    auto d = make_dir(tmp.file("d"), "../c");
    auto chain = d.parent_chain();
    REQUIRE(chain);
    REQUIRE(chain->size() == 3);
    CHECK((*chain)[0].path() == tmp.file("d/../c"));
    CHECK((*chain)[1].path() == tmp.file("b"));
    CHECK((*chain)[2].path() == tmp.file("b/../a"));

    auto short_cap = d.parent_chain(2);
    REQUIRE_FALSE(short_cap);
    CHECK(contains(short_cap.error().str(), "parent chain is longer than 2 images"));

    auto top = ImageDir::open(tmp.file("a"));
    REQUIRE(top);
    auto none = top->parent_chain();
    REQUIRE(none);
    CHECK(none->empty());
}

TEST_CASE("image dir: parent loops and missing parents are refused", "[image_dir]") {
    TempDir tmp;
    make_dir(tmp.file("x"), "../y");
    auto y = make_dir(tmp.file("y"), "../x");
    auto loop = y.parent_chain();
    REQUIRE_FALSE(loop);
    CHECK(contains(loop.error().str(), "parent chain loops"));

    auto self = make_dir(tmp.file("s"), ".");
    loop = self.parent_chain();
    REQUIRE_FALSE(loop);
    CHECK(contains(loop.error().str(), "parent chain loops: " + tmp.file("s/.") + " is already in it"));

    auto orphan = make_dir(tmp.file("o"), "../gone");
    auto missing = orphan.parent_chain();
    REQUIRE_FALSE(missing);
    CHECK(contains(missing.error().str(), "parent of " + tmp.file("o") + ": " + tmp.file("o/../gone") +
                                              ": cannot open image directory"));
}
