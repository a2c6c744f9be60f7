// Image files over a Channel (every image except pages, which go through page_transfer.h):
//   file_data {str name, u64 offset, u64 total, u8 last} + bytes, in order, 4 MiB at most.
// The receiver writes only plain names inside its staging directory (no '/', no leading
// '.', at most 200 bytes), creates each file exclusively, accepts bytes only at the end of
// what it has, never beyond the announced total, and caps the total of all files.
#pragma once

#include <map>
#include <string>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "migrate/net/channel.h"

namespace criu {

// Sends every regular file of `dir` (except *.log, pages-* and pagemap-*) and returns the
// bytes sent.
Expected<uint64_t> send_image_files(Channel& ch, const std::string& dir);

class FileReceiver {
public:
    static constexpr uint64_t kMaxTotalBytes = 64ull << 30;

    explicit FileReceiver(int dirfd) : dirfd_(dirfd) {}
    Status handle(const Message& m);
    // Every file announced arrived whole.
    Status check_complete() const;
    size_t files() const { return files_.size(); }
    uint64_t bytes() const { return total_; }

    static bool valid_name(const std::string& name);

private:
    struct Incoming {
        UniqueFd fd;
        uint64_t have = 0;
        uint64_t total = 0;
        bool done = false;
    };
    int dirfd_;
    std::map<std::string, Incoming> files_;
    uint64_t total_ = 0;
};

}  // namespace criu
