// Helpers shared by the images unit tests: a scratch directory, whole-file I/O and
// a filler that gives every field of a message a non-default value.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/message.h>

namespace criu::test {

// mkdtemp under /tmp; removed recursively on destruction.
class TempDir {
public:
    // Under `base` (default /tmp); /dev/shm gives a tmpfs, which refuses O_DIRECT.
    explicit TempDir(const std::string& base = "/tmp");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

// Sets every field (recursing into messages, two elements per repeated field) to a
// value that differs from the default and depends on `seed`.
void fill_message(google::protobuf::Message& msg, uint32_t seed, int depth = 0);

// Strict RFC 8259 syntax check of one JSON text; returns "" if valid, else what is wrong.
std::string json_error(const std::string& text);

}  // namespace criu::test
