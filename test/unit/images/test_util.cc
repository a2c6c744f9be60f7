#include "test/unit/images/test_util.h"

#include <ftw.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <google/protobuf/descriptor.h>

namespace criu::test {

TempDir::TempDir(const std::string& base) {
    std::string tmpl = base + "/criu-images-test-XXXXXX";
    if (!::mkdtemp(tmpl.data()))
        throw std::runtime_error("mkdtemp failed under " + base);
    path_ = tmpl;
}

TempDir::~TempDir() {
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void fill_message(google::protobuf::Message& msg, uint32_t seed, int depth) {
    using FD = google::protobuf::FieldDescriptor;
    const auto* d = msg.GetDescriptor();
    const auto* r = msg.GetReflection();
    for (int i = 0; i < d->field_count(); i++) {
        const FD* f = d->field(i);
        // Only the last member of a oneof survives; that is fine for a round trip.
        int n = f->is_repeated() ? 2 : 1;
        for (int k = 0; k < n; k++) {
            uint64_t v = uint64_t(seed) * 1000003u + uint64_t(f->number()) * 7919u + uint64_t(k) + 1;
            switch (f->cpp_type()) {
            case FD::CPPTYPE_INT32:
                f->is_repeated() ? r->AddInt32(&msg, f, -int32_t(v & 0x7fffffff))
                                 : r->SetInt32(&msg, f, -int32_t(v & 0x7fffffff));
                break;
            case FD::CPPTYPE_INT64:
                f->is_repeated() ? r->AddInt64(&msg, f, -int64_t(v << 20)) : r->SetInt64(&msg, f, -int64_t(v << 20));
                break;
            case FD::CPPTYPE_UINT32:
                f->is_repeated() ? r->AddUInt32(&msg, f, uint32_t(v) | 0x80000000u)
                                 : r->SetUInt32(&msg, f, uint32_t(v) | 0x80000000u);
                break;
            case FD::CPPTYPE_UINT64:
                f->is_repeated() ? r->AddUInt64(&msg, f, v | (1ull << 63)) : r->SetUInt64(&msg, f, v | (1ull << 63));
                break;
            case FD::CPPTYPE_BOOL:
                f->is_repeated() ? r->AddBool(&msg, f, true) : r->SetBool(&msg, f, true);
                break;
            case FD::CPPTYPE_DOUBLE:
                f->is_repeated() ? r->AddDouble(&msg, f, double(v) / 3) : r->SetDouble(&msg, f, double(v) / 3);
                break;
            case FD::CPPTYPE_FLOAT:
                f->is_repeated() ? r->AddFloat(&msg, f, float(v) / 3) : r->SetFloat(&msg, f, float(v) / 3);
                break;
            case FD::CPPTYPE_ENUM: {
                const auto* e = f->enum_type();
                const auto* ev = e->value(e->value_count() - 1 - int(v % std::max(1, e->value_count() - 1)));
                f->is_repeated() ? r->AddEnum(&msg, f, ev) : r->SetEnum(&msg, f, ev);
                break;
            }
            case FD::CPPTYPE_STRING: {
                std::string s;
                if (f->type() == FD::TYPE_BYTES)
                    s = std::string("\x00\xff\x80", 3) + std::to_string(v) + std::string(200, char(v));
                else
                    s = "s" + std::to_string(v) + " \u00e9";
                f->is_repeated() ? r->AddString(&msg, f, s) : r->SetString(&msg, f, s);
                break;
            }
            case FD::CPPTYPE_MESSAGE:
                if (depth < 4) {
                    auto* sub = f->is_repeated() ? r->AddMessage(&msg, f) : r->MutableMessage(&msg, f);
                    fill_message(*sub, seed + uint32_t(k) + 1, depth + 1);
                }
                break;
            }
        }
    }
}

namespace {

struct JsonParser {
    const std::string& s;
    size_t i = 0;
    std::string err;
    int depth = 0;

    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
    }
    bool bad(const std::string& what) {
        if (err.empty())
            err = what + " at offset " + std::to_string(i);
        return false;
    }
    bool lit(const char* w) {
        size_t n = std::char_traits<char>::length(w);
        if (s.compare(i, n, w) != 0)
            return bad("bad literal");
        i += n;
        return true;
    }
    bool string() {
        if (i >= s.size() || s[i] != '"')
            return bad("expected string");
        i++;
        while (i < s.size()) {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (c == '"') {
                i++;
                return true;
            }
            if (c < 0x20)
                return bad("control character in string");
            if (c == '\\') {
                i++;
                if (i >= s.size())
                    return bad("unterminated escape");
                char e = s[i];
                if (e == 'u') {
                    for (int k = 1; k <= 4; k++)
                        if (i + k >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + k])))
                            return bad("bad \\u escape");
                    i += 4;
                } else if (std::string("\"\\/bfnrt").find(e) == std::string::npos) {
                    return bad("bad escape");
                }
            }
            i++;
        }
        return bad("unterminated string");
    }
    bool number() {
        size_t st = i;
        if (i < s.size() && s[i] == '-')
            i++;
        if (i < s.size() && s[i] == '0')
            i++;
        else if (i < s.size() && s[i] >= '1' && s[i] <= '9')
            while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
                i++;
        else
            return bad("bad number");
        if (i < s.size() && s[i] == '.') {
            i++;
            if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i])))
                return bad("bad fraction");
            while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
                i++;
        }
        if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
            i++;
            if (i < s.size() && (s[i] == '+' || s[i] == '-'))
                i++;
            if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i])))
                return bad("bad exponent");
            while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
                i++;
        }
        return i > st;
    }
    bool value() {
        if (++depth > 200)
            return bad("too deep");
        ws();
        if (i >= s.size())
            return bad("unexpected end");
        bool ok;
        char c = s[i];
        if (c == '{') {
            i++;
            ws();
            ok = true;
            if (i < s.size() && s[i] == '}') {
                i++;
            } else {
                for (;;) {
                    ws();
                    if (!string())
                        return false;
                    ws();
                    if (i >= s.size() || s[i] != ':')
                        return bad("expected ':'");
                    i++;
                    if (!value())
                        return false;
                    ws();
                    if (i < s.size() && s[i] == ',') {
                        i++;
                        continue;
                    }
                    if (i < s.size() && s[i] == '}') {
                        i++;
                        break;
                    }
                    return bad("expected ',' or '}'");
                }
            }
        } else if (c == '[') {
            i++;
            ws();
            ok = true;
            if (i < s.size() && s[i] == ']') {
                i++;
            } else {
                for (;;) {
                    if (!value())
                        return false;
                    ws();
                    if (i < s.size() && s[i] == ',') {
                        i++;
                        continue;
                    }
                    if (i < s.size() && s[i] == ']') {
                        i++;
                        break;
                    }
                    return bad("expected ',' or ']'");
                }
            }
        } else if (c == '"') {
            ok = string();
        } else if (c == 't') {
            ok = lit("true");
        } else if (c == 'f') {
            ok = lit("false");
        } else if (c == 'n') {
            ok = lit("null");
        } else {
            ok = number();
        }
        depth--;
        return ok;
    }
};

}  // namespace

std::string json_error(const std::string& text) {
    JsonParser p{text};
    if (!p.value())
        return p.err;
    p.ws();
    if (p.i != text.size())
        return "trailing data at offset " + std::to_string(p.i);
    return "";
}

}  // namespace criu::test
