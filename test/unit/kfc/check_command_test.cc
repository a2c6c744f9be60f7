#include <catch2/catch.hpp>

#include "kernel-feature-check/check_command.h"
#include "test/unit/kfc/json_check.h"
#include "test/unit/kfc/kfc_test_util.h"

using namespace criu::kfc;
using namespace criu::kfc::test;

namespace {

const KernelFeatures& probed() {
    static const KernelFeatures kf = KernelFeatures::run_all();
    return kf;
}

struct Run {
    int rc;
    std::string out, err;
};

Run check(const CheckArgs& args, const KernelFeatures& kf = probed()) {
    Run r;
    r.rc = run_check_command(args, kf, r.out, r.err);
    return r;
}

}  // namespace

TEST_CASE("criu check says Looks good when every required feature works, --ms alike") {
    auto plain = check({});
    CHECK(plain.rc == 0);
    CHECK(plain.out == "Looks good.\n");
    auto ms = check({.ms = true});
    CHECK(ms.rc == 0);
    CHECK(ms.out == plain.out);
}

TEST_CASE("criu check --all also reports the optional rows") {
    auto r = check({.all = true});
    CHECK(r.rc == 0);
    CHECK(r.out.find("Looks good.") != std::string::npos);
    CHECK(r.out.find("soft_dirty") != std::string::npos);
    CHECK(r.out.find("Not required but missing: soft_dirty") != std::string::npos);
}

TEST_CASE("criu check --feature answers like CRIU") {
    auto dt = check({.feature = "mem_dirty_track"});
    CHECK(dt.rc == 0);
    CHECK(dt.out == "mem_dirty_track is supported\n");
    auto sd = check({.feature = "soft_dirty"});
    CHECK(sd.rc == 1);
    CHECK(sd.out == "soft_dirty is not supported\n");
    CHECK(sd.err.find("bit 55") != std::string::npos);
    auto alias = check({.feature = "timens"});
    CHECK(alias.rc == 0);
    CHECK(alias.out == "timens is supported\n");
    auto several = check({.feature = "uffd,soft_dirty"});
    CHECK(several.rc == 1);
    CHECK(several.out == "uffd is supported\nsoft_dirty is not supported\n");
    auto unknown = check({.feature = "warp_drive"});
    CHECK(unknown.rc == 2);
    CHECK(unknown.err == "Unknown feature warp_drive\n");
}

TEST_CASE("criu check --feature list names every feature") {
    auto r = check({.feature = "list"}, KernelFeatures{});
    CHECK(r.rc == 0);
    for (const auto& n : feature_names())
        CHECK(r.out.find(n) != std::string::npos);
    CHECK(r.out.back() == '\n');
}

TEST_CASE("criu check --json prints strict JSON") {
    auto r = check({.json = true});
    CHECK(r.rc == 0);
    CHECK(check_json(r.out).ok);
}

TEST_CASE("criu check says Does not look good and names the missing required row") {
    // A result where ptrace_seize failed: edit a saved cache and load it back.
    TempDir dir;
    std::string path = dir.file("kfc.cache");
    REQUIRE(probed().save_cache(path));
    std::string text = slurp(path);
    size_t p = text.find("row ptrace_seize 1 ");
    REQUIRE(p != std::string::npos);
    text[p + std::string("row ptrace_seize ").size()] = '0';
    spit(path, text);
    auto broken = KernelFeatures::load_cache(path);
    REQUIRE(broken);
    CHECK_FALSE(broken->required_ok());
    auto r = check({}, *broken);
    CHECK(r.rc == 1);
    CHECK(r.out.rfind("Does not look good.\n", 0) == 0);
    CHECK(r.out.find("ptrace_seize") != std::string::npos);
    CHECK(r.out.find("Looks good.") == std::string::npos);
    CHECK(check({.json = true}, *broken).rc == 1);
}
