#include "test/unit/kfc/json_check.h"

#include <set>

namespace criu::kfc::test {

namespace {

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}

    JsonCheck run() {
        ws();
        if (!value())
            return {false, pos_, err_};
        ws();
        if (pos_ != s_.size())
            return {false, pos_, "trailing characters after the value"};
        return {true, pos_, ""};
    }

private:
    bool fail(std::string msg) {
        if (err_.empty())
            err_ = std::move(msg);
        return false;
    }
    bool eof() const { return pos_ >= s_.size(); }
    char peek() const { return eof() ? '\0' : s_[pos_]; }
    void ws() {
        while (!eof() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r'))
            pos_++;
    }
    bool literal(std::string_view word) {
        if (s_.substr(pos_, word.size()) != word)
            return fail("bad literal");
        pos_ += word.size();
        return true;
    }
    bool value() {
        if (++depth_ > 64)
            return fail("nesting too deep");
        bool r;
        switch (peek()) {
        case '{':
            r = object();
            break;
        case '[':
            r = array();
            break;
        case '"': {
            std::string ignored;
            r = string(ignored);
            break;
        }
        case 't':
            r = literal("true");
            break;
        case 'f':
            r = literal("false");
            break;
        case 'n':
            r = literal("null");
            break;
        default:
            r = number();
        }
        depth_--;
        return r;
    }
    bool object() {
        pos_++;  // '{'
        ws();
        if (peek() == '}') {
            pos_++;
            return true;
        }
        std::set<std::string> keys;
        for (;;) {
            ws();
            if (peek() != '"')
                return fail("expected a string key");
            std::string key;
            if (!string(key))
                return false;
            if (!keys.insert(key).second)
                return fail("duplicate key \"" + key + "\"");
            ws();
            if (peek() != ':')
                return fail("expected ':'");
            pos_++;
            ws();
            if (!value())
                return false;
            ws();
            if (peek() == ',') {
                pos_++;
                continue;
            }
            if (peek() == '}') {
                pos_++;
                return true;
            }
            return fail("expected ',' or '}'");
        }
    }
    bool array() {
        pos_++;  // '['
        ws();
        if (peek() == ']') {
            pos_++;
            return true;
        }
        for (;;) {
            ws();
            if (!value())
                return false;
            ws();
            if (peek() == ',') {
                pos_++;
                continue;
            }
            if (peek() == ']') {
                pos_++;
                return true;
            }
            return fail("expected ',' or ']'");
        }
    }
    static bool is_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }
    bool string(std::string& out) {
        pos_++;  // '"'
        while (!eof()) {
            unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                pos_++;
                return true;
            }
            if (c < 0x20)
                return fail("control character in a string");
            if (c == '\\') {
                pos_++;
                char e = peek();
                if (e == 'u') {
                    for (int i = 1; i <= 4; i++)
                        if (!is_hex(pos_ + i < s_.size() ? s_[pos_ + i] : '\0'))
                            return fail("bad \\u escape");
                    pos_ += 5;
                    out += '?';
                    continue;
                }
                if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos || eof())
                    return fail("bad escape");
                out += e;
                pos_++;
                continue;
            }
            out += char(c);
            pos_++;
        }
        return fail("unterminated string");
    }
    bool digits() {
        size_t start = pos_;
        while (!eof() && peek() >= '0' && peek() <= '9')
            pos_++;
        return pos_ > start;
    }
    bool number() {
        if (peek() == '-')
            pos_++;
        if (peek() == '0') {
            pos_++;
        } else if (peek() >= '1' && peek() <= '9') {
            digits();
        } else {
            return fail("expected a value");
        }
        if (peek() == '.') {
            pos_++;
            if (!digits())
                return fail("digits expected after '.'");
        }
        if (peek() == 'e' || peek() == 'E') {
            pos_++;
            if (peek() == '+' || peek() == '-')
                pos_++;
            if (!digits())
                return fail("digits expected in exponent");
        }
        return true;
    }

    std::string_view s_;
    size_t pos_ = 0;
    int depth_ = 0;
    std::string err_;
};

}  // namespace

JsonCheck check_json(std::string_view text) { return Parser(text).run(); }

}  // namespace criu::kfc::test
