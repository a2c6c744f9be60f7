#include <catch2/catch.hpp>

#include "test/unit/kfc/json_check.h"

using criu::kfc::test::check_json;

TEST_CASE("strict JSON checker accepts valid documents") {
    for (const char* ok : {"{}", "[]", "0", "-0.5e+3", "\"a\\u00e9\\n\"", "{\"a\": [1, true, false, null]}",
                           " {\"a\": {\"b\": []}} "}) {
        INFO(ok);
        CHECK(check_json(ok).ok);
    }
}

TEST_CASE("strict JSON checker rejects malformed documents") {
    for (const char* bad : {"", "{", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "1.", "+1", "\"tab\there\"",
                            "\"\\x\"", "{\"a\":1 \"b\":2}", "{\"a\":1,\"a\":2}", "[1] [2]", "tru", "\"open",
                            "{\"a\"}", "NaN"}) {
        INFO(bad);
        CHECK_FALSE(check_json(bad).ok);
    }
}
