#include <catch2/catch.hpp>

#include "criu/core/error.h"

using namespace criu;

namespace {
Expected<int> parse_positive(int v) {
    if (v <= 0)
        return failf(EINVAL, "value {} is not positive", v);
    return v;
}

Expected<int> twice(int v) {
    int x = TRY_CTX(parse_positive(v), "while doubling {}", v);
    return 2 * x;
}
}  // namespace

TEST_CASE("errors keep the innermost cause and add context on the way up") {
    auto ok = twice(4);
    REQUIRE(ok);
    CHECK(*ok == 8);

    auto bad = twice(-1);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().err() == EINVAL);
    CHECK(bad.error().message() == "value -1 is not positive");
    CHECK(bad.error().str() == "while doubling -1: value -1 is not positive: Invalid argument");
}
