#include <catch2/catch.hpp>

#include "kernel-feature-check/features.h"
#include "test/unit/kfc/kfc_test_util.h"

using namespace criu::kfc;
using namespace criu::kfc::test;

namespace {

const KernelFeatures& probed() {
    static const KernelFeatures kf = KernelFeatures::run_all();
    return kf;
}

std::string replace_line_starting(std::string text, const std::string& prefix, const std::string& with) {
    size_t p = text.find(prefix);
    REQUIRE(p != std::string::npos);
    size_t e = text.find('\n', p);
    return text.replace(p, e - p, with);
}

}  // namespace

TEST_CASE("a saved cache loads back with the same answers and facts") {
    TempDir dir;
    std::string path = dir.file("sub/kfc.cache");  // the directory is created on save
    REQUIRE(probed().save_cache(path));
    auto loaded = KernelFeatures::load_cache(path);
    REQUIRE(loaded);
    CHECK(loaded->from_cache());
    REQUIRE(loaded->rows().size() == probed().rows().size());
    for (size_t i = 0; i < loaded->rows().size(); i++) {
        const auto& a = probed().rows()[i];
        const auto& b = loaded->rows()[i];
        INFO(a.name);
        CHECK(a.name == b.name);
        CHECK(a.present == b.present);
        CHECK(a.detail == b.detail);
        CHECK(a.category == b.category);
        CHECK(a.enables == b.enables);
    }
    CHECK(loaded->facts().xsave_size == probed().facts().xsave_size);
    CHECK(loaded->facts().xcr0 == probed().facts().xcr0);
    CHECK(loaded->facts().vdso_layout.size() == probed().facts().vdso_layout.size());
    CHECK(loaded->required_ok() == probed().required_ok());
    CHECK(loaded->dirty_track_method() == probed().dirty_track_method());
}

TEST_CASE("detect() uses a valid cache and probes when told not to") {
    TempDir dir;
    std::string path = dir.file("kfc.cache");
    KernelFeatures first = KernelFeatures::detect({.use_cache = true, .cache_path = path});
    CHECK_FALSE(first.from_cache());
    KernelFeatures second = KernelFeatures::detect({.use_cache = true, .cache_path = path});
    CHECK(second.from_cache());
    KernelFeatures fresh = KernelFeatures::detect({.use_cache = false, .cache_path = path});
    CHECK_FALSE(fresh.from_cache());
}

TEST_CASE("a cache for another kernel, boot or table, or one others can write, is refused") {
    TempDir dir;
    std::string path = dir.file("kfc.cache");
    REQUIRE(probed().save_cache(path));
    std::string good = slurp(path);

    spit(path, replace_line_starting(good, "release ", "release 5.10.0-other"));
    auto r = KernelFeatures::load_cache(path);
    REQUIRE_FALSE(r);
    CHECK(r.error().err() == ESTALE);

    spit(path, replace_line_starting(good, "boot_id ", "boot_id 00000000-0000-0000-0000-000000000000"));
    CHECK(KernelFeatures::load_cache(path).error().err() == ESTALE);

    spit(path, replace_line_starting(good, "table ", "table 0000000000000000"));
    CHECK(KernelFeatures::load_cache(path).error().err() == ESTALE);

    spit(path, replace_line_starting(good, "row ptrace_seize ", ""));  // a row missing
    CHECK(KernelFeatures::load_cache(path).error().err() == ESTALE);

    spit(path, good + "row kcmp 1 again\n");
    CHECK(KernelFeatures::load_cache(path).error().err() == EINVAL);

    spit(path, good + "bogus record\n");
    CHECK(KernelFeatures::load_cache(path).error().err() == EINVAL);

    spit(path, "not a cache\n");
    CHECK(KernelFeatures::load_cache(path).error().err() == EINVAL);

    spit(path, good, 0666);
    CHECK(KernelFeatures::load_cache(path).error().err() == EPERM);

    CHECK_FALSE(KernelFeatures::load_cache(dir.file("missing")));
}
