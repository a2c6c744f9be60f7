// A small strict JSON (RFC 8259) validator for tests: no trailing commas, no
// comments, no control characters in strings, no duplicate keys in an object.
#pragma once

#include <string>
#include <string_view>

namespace criu::kfc::test {

struct JsonCheck {
    bool ok = false;
    size_t offset = 0;  // where the first problem is
    std::string error;
};

JsonCheck check_json(std::string_view text);

}  // namespace criu::kfc::test
