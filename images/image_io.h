// Framing of every image file except raw page data:
//   header:  u32 file magic (per image type) | u32 format major | u32 format minor | u32 flags (0)
//   records: u32 payload length | u32 crc32c(payload) | payload (one protobuf message)
//   end:     u32 0xffffffff | u32 number of records   (a file without it was cut short)
// Readers are hostile-input safe: every length is capped, every checksum checked, and every
// error names the file and the record number.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

inline constexpr uint32_t kFormatMajor = 1;
inline constexpr uint32_t kFormatMinor = 0;
// No single record may be larger than this (a TaskCore with thousands of threads fits easily).
inline constexpr uint32_t kMaxRecordSize = 64u << 20;

enum class ImageType : uint32_t {
    Inventory,
    Pstree,
    Core,
    Mm,
    Pagemap,
    Files,
    Fdinfo,
    PipeData,
    Fs,
    DumpStats,
    RestoreStats,
    IpcNs,
};

struct ImageTypeInfo {
    ImageType type;
    uint32_t magic;
    const char* prefix;        // "core" for core-<pid>.img, "inventory" for inventory.img
    bool per_id;               // file name carries an id
    const char* message_name;  // full protobuf name of the records ("criu.images.TaskCore")
};

const ImageTypeInfo& image_type_info(ImageType t);
// Finds the type of an image by file name ("core-42.img" -> Core); nullptr if unknown.
const ImageTypeInfo* image_type_by_name(std::string_view file_name);
const std::vector<ImageTypeInfo>& all_image_types();
std::string image_file_name(ImageType t, int64_t id = -1);

class ImageWriter {
public:
    // Creates (O_TRUNC) `path` and writes the header.
    static Expected<ImageWriter> create(const std::string& path, ImageType type);
    static Expected<ImageWriter> create_at(int dirfd, const std::string& name, ImageType type);
    // Same; errors name `shown_path` (the directory's path plus `name`).
    static Expected<ImageWriter> create_at(int dirfd, const std::string& name, ImageType type,
                                           const std::string& shown_path);

    Status write(const google::protobuf::MessageLite& msg);
    // Flushes; with `sync`, fsyncs. Called by the destructor without sync if not called.
    Status close(bool sync = false);

    ImageWriter(ImageWriter&&) noexcept = default;
    ImageWriter& operator=(ImageWriter&&) noexcept = default;
    ~ImageWriter();

private:
    ImageWriter(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    Status flush();

    UniqueFd fd_;
    std::string path_;
    std::string buf_;
    uint32_t records_ = 0;
};

class ImageReader {
public:
    // Opens and checks the header (magic of `type`, format major).
    static Expected<ImageReader> open(const std::string& path, ImageType type);
    static Expected<ImageReader> open_at(int dirfd, const std::string& name, ImageType type);
    static Expected<ImageReader> open_at(int dirfd, const std::string& name, ImageType type,
                                         const std::string& shown_path);
    // Reads an image held in memory (a stream, a fuzzer input); `name` is used in errors.
    static Expected<ImageReader> from_buffer(std::string data, std::string name, ImageType type);

    // Reads the next record into `msg`. Returns false at a clean end of file; a truncated,
    // oversized, corrupt or unparsable record is an error naming the file and record number.
    Expected<bool> read(google::protobuf::MessageLite& msg);

    template <class T>
    Expected<T> read_one() {
        T msg;
        bool got = TRY(read(msg));
        if (!got)
            return failf(EINVAL, "{}: expected a record, found end of file", path_);
        return msg;
    }

    template <class T>
    Expected<std::vector<T>> read_all() {
        std::vector<T> out;
        for (;;) {
            T msg;
            bool got = TRY(read(msg));
            if (!got)
                break;
            out.push_back(std::move(msg));
        }
        return out;
    }

    const std::string& path() const { return path_; }
    ImageType type() const { return type_; }
    uint32_t format_minor() const { return minor_; }
    uint32_t records_read() const { return records_; }

private:
    ImageReader(UniqueFd fd, std::string path, ImageType type)
        : fd_(std::move(fd)), path_(std::move(path)), type_(type) {}
    static Expected<ImageReader> start(ImageReader r, uint64_t size);
    // Makes at least `want` unread bytes available in buf_ unless the file ends first;
    // returns how many are available.
    Expected<size_t> fill(size_t want);
    // Bytes of the image not yet handed out (buffered or still in the file).
    uint64_t remaining() const { return size_ - consumed_; }
    bool done_ = false;  // the end marker was read

    UniqueFd fd_;
    std::string path_;
    ImageType type_;
    std::string buf_;
    size_t pos_ = 0;
    uint64_t size_ = 0;      // file size at open: no length field may point past it
    uint64_t consumed_ = 0;  // bytes handed out so far, header included
    uint32_t minor_ = 0;
    uint32_t records_ = 0;
};

// CRC-32C; `seed` is the crc of the preceding data when checksumming in pieces.
uint32_t crc32c(const void* data, size_t len, uint32_t seed = 0);

namespace detail {
// Both implementations, for tests that check they agree.
uint32_t crc32c_table(const void* data, size_t len, uint32_t seed);
uint32_t crc32c_hw(const void* data, size_t len, uint32_t seed);
bool crc32c_hw_available();
}  // namespace detail

// Fails unless `fd` takes all of `len` bytes (retries short writes and EINTR).
Status write_full(int fd, const void* data, size_t len, const std::string& path);
// Reads up to `len` bytes at `off`, retrying short reads and EINTR; returns the count (less at EOF).
Expected<size_t> pread_full(int fd, void* data, size_t len, uint64_t off, const std::string& path);

}  // namespace criu
