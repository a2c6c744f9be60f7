#include "images/image_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <google/protobuf/io/coded_stream.h>

namespace criu {
namespace {

constexpr size_t kHeaderSize = 16;
constexpr size_t kRecordHeaderSize = 8;
// The end marker: a record header whose length field is this (never a valid length, it is
// above kMaxRecordSize) and whose second word is the number of records before it. Without
// it, a file cut exactly between two records would read back as a shorter, valid file.
constexpr uint32_t kEndMarker = 0xffffffffu;
// The writer hands data to the kernel in pieces of about this size.
constexpr size_t kWriteChunk = 1u << 20;
// The reader asks the kernel for at least this much at a time.
constexpr size_t kReadChunk = 64u << 10;
// Nesting depth a record may have; our schemas nest 3 deep, so this is generous
// while keeping a hostile record from exhausting the stack.
constexpr int kRecursionLimit = 32;

constexpr uint32_t tag(const char (&s)[5]) {
    return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 | uint32_t(uint8_t(s[2])) << 16 |
           uint32_t(uint8_t(s[3])) << 24;
}

// Magics read as ASCII in a hex dump ("CRIV" ...), one per type so that a file
// renamed or opened as the wrong type is refused with a clear message.
const std::vector<ImageTypeInfo> kTypes = {
    {ImageType::Inventory, tag("CRIV"), "inventory", false, "criu.images.Inventory"},
    {ImageType::Pstree, tag("CRPT"), "pstree", false, "criu.images.PstreeEntry"},
    {ImageType::Core, tag("CRCO"), "core", true, "criu.images.TaskCore"},
    {ImageType::Mm, tag("CRMM"), "mm", true, "criu.images.MmInfo"},
    // First record is a PagemapHead, the rest PagemapEntry.
    {ImageType::Pagemap, tag("CRPM"), "pagemap", true, "criu.images.PagemapEntry"},
    {ImageType::Files, tag("CRFL"), "files", false, "criu.images.FileEntry"},
    {ImageType::Fdinfo, tag("CRFD"), "fdinfo", true, "criu.images.FdEntry"},
    {ImageType::PipeData, tag("CRPD"), "pipes-data", false, "criu.images.PipeData"},
    {ImageType::Fs, tag("CRFS"), "fs", true, "criu.images.FsInfo"},
    {ImageType::DumpStats, tag("CRSD"), "stats-dump", false, "criu.images.DumpStats"},
    {ImageType::RestoreStats, tag("CRSR"), "stats-restore", false, "criu.images.RestoreStats"},
    {ImageType::IpcNs, tag("CRIP"), "ipc-ns", false, "criu.images.IpcNamespace"},
};

uint32_t load_u32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;  // images are little-endian; so is every host we run on (x86-64 only)
}

void store_u32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }

const ImageTypeInfo* type_by_magic(uint32_t magic) {
    for (const auto& t : kTypes)
        if (t.magic == magic)
            return &t;
    return nullptr;
}

}  // namespace

const ImageTypeInfo& image_type_info(ImageType t) {
    auto i = static_cast<size_t>(t);
    // The enum and the table are kept in the same order; every enumerator has a row.
    if (i < kTypes.size() && kTypes[i].type == t)
        return kTypes[i];
    for (const auto& row : kTypes)
        if (row.type == t)
            return row;
    return kTypes[0];
}

const std::vector<ImageTypeInfo>& all_image_types() { return kTypes; }

const ImageTypeInfo* image_type_by_name(std::string_view name) {
    constexpr std::string_view ext = ".img";
    if (name.size() <= ext.size() || !name.ends_with(ext))
        return nullptr;
    std::string_view stem = name.substr(0, name.size() - ext.size());
    for (const auto& t : kTypes) {
        std::string_view prefix = t.prefix;
        if (!t.per_id) {
            if (stem == prefix)
                return &t;
            continue;
        }
        if (stem.size() <= prefix.size() + 1 || !stem.starts_with(prefix) || stem[prefix.size()] != '-')
            continue;
        std::string_view id = stem.substr(prefix.size() + 1);
        if (id.size() <= 19 && std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return &t;
    }
    return nullptr;
}

std::string image_file_name(ImageType t, int64_t id) {
    const auto& info = image_type_info(t);
    if (info.per_id)
        return fmt::format("{}-{}.img", info.prefix, id);
    return fmt::format("{}.img", info.prefix);
}

Status write_full(int fd, const void* data, size_t len, const std::string& path) {
    const auto* p = static_cast<const char*>(data);
    while (len > 0) {
        ssize_t n = ::write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno("{}: write failed", path);
        }
        if (n == 0)
            return failf(ENOSPC, "{}: write made no progress", path);
        p += n;
        len -= static_cast<size_t>(n);
    }
    return {};
}

Expected<size_t> pread_full(int fd, void* data, size_t len, uint64_t off, const std::string& path) {
    auto* p = static_cast<char*>(data);
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno("{}: read at offset {} failed", path, off + done);
        }
        if (n == 0)
            break;
        done += static_cast<size_t>(n);
    }
    return done;
}

// ---- writer ----

Expected<ImageWriter> ImageWriter::create(const std::string& path, ImageType type) {
    return create_at(AT_FDCWD, path, type);
}

Expected<ImageWriter> ImageWriter::create_at(int dirfd, const std::string& name, ImageType type) {
    return create_at(dirfd, name, type, name);
}

Expected<ImageWriter> ImageWriter::create_at(int dirfd, const std::string& name, ImageType type,
                                             const std::string& shown_path) {
    int fd = ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno("{}: cannot create image", shown_path);
    ImageWriter w(UniqueFd(fd), shown_path);
    w.buf_.resize(kHeaderSize);
    store_u32(w.buf_.data(), image_type_info(type).magic);
    store_u32(w.buf_.data() + 4, kFormatMajor);
    store_u32(w.buf_.data() + 8, kFormatMinor);
    store_u32(w.buf_.data() + 12, 0);
    return w;
}

Status ImageWriter::write(const google::protobuf::MessageLite& msg) {
    if (!fd_)
        return failf(EBADF, "{}: write after close", path_);
    size_t len = msg.ByteSizeLong();
    if (len > kMaxRecordSize)
        return failf(EFBIG, "{}: record {}: {} bytes exceeds the limit of {} bytes", path_, records_ + 1, len,
                     kMaxRecordSize);
    size_t at = buf_.size();
    buf_.resize(at + kRecordHeaderSize + len);
    char* payload = buf_.data() + at + kRecordHeaderSize;
    if (!msg.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload))) {
        buf_.resize(at);
        return failf(EINVAL, "{}: record {}: cannot serialize {}", path_, records_ + 1, msg.GetTypeName());
    }
    store_u32(buf_.data() + at, static_cast<uint32_t>(len));
    store_u32(buf_.data() + at + 4, crc32c(payload, len));
    records_++;
    if (buf_.size() >= kWriteChunk)
        TRY_VOID(flush());
    return {};
}

Status ImageWriter::flush() {
    if (buf_.empty())
        return {};
    auto st = write_full(fd_.get(), buf_.data(), buf_.size(), path_);
    buf_.clear();
    return st;
}

Status ImageWriter::close(bool sync) {
    if (!fd_)
        return {};
    size_t at = buf_.size();
    buf_.resize(at + kRecordHeaderSize);
    store_u32(buf_.data() + at, kEndMarker);
    store_u32(buf_.data() + at + 4, records_);
    Status st = flush();
    if (st && sync && ::fsync(fd_.get()) < 0)
        st = fail_errno("{}: fsync failed", path_);
    // close() can report a deferred write error (NFS, quota): keep it.
    if (::close(fd_.release()) < 0 && st)
        st = fail_errno("{}: close failed", path_);
    return st;
}

ImageWriter::~ImageWriter() {
    // Errors here have nowhere to go; callers that care call close() themselves.
    (void)close(false);
}

// ---- reader ----

Expected<ImageReader> ImageReader::open(const std::string& path, ImageType type) {
    return open_at(AT_FDCWD, path, type);
}

Expected<ImageReader> ImageReader::open_at(int dirfd, const std::string& name, ImageType type) {
    return open_at(dirfd, name, type, name);
}

Expected<ImageReader> ImageReader::open_at(int dirfd, const std::string& name, ImageType type,
                                           const std::string& shown_path) {
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("{}: cannot open image", shown_path);
    ImageReader r(UniqueFd(fd), shown_path, type);
    struct stat st;
    if (::fstat(r.fd_.get(), &st) < 0)
        return fail_errno("{}: fstat failed", shown_path);
    if (!S_ISREG(st.st_mode))
        return failf(EINVAL, "{}: not a regular file", shown_path);
    return start(std::move(r), static_cast<uint64_t>(st.st_size));
}

Expected<ImageReader> ImageReader::from_buffer(std::string data, std::string name, ImageType type) {
    ImageReader r(UniqueFd(), std::move(name), type);
    uint64_t size = data.size();
    r.buf_ = std::move(data);
    return start(std::move(r), size);
}

Expected<ImageReader> ImageReader::start(ImageReader r, uint64_t size) {
    r.size_ = size;
    const auto& want = image_type_info(r.type_);
    if (size < kHeaderSize)
        return failf(EINVAL, "{}: not a {} image: {} bytes is too short for the {}-byte header", r.path_,
                     want.prefix, size, kHeaderSize);
    size_t got = TRY(r.fill(kHeaderSize));
    if (got < kHeaderSize)
        return failf(EINVAL, "{}: not a {} image: file shrank to {} bytes while reading the header", r.path_,
                     want.prefix, got);
    const char* h = r.buf_.data() + r.pos_;
    uint32_t magic = load_u32(h), major = load_u32(h + 4), minor = load_u32(h + 8), flags = load_u32(h + 12);
    if (magic != want.magic) {
        if (const auto* other = type_by_magic(magic))
            return failf(EINVAL, "{}: not a {} image (magic {:#010x} is that of a {} image, expected {:#010x})",
                         r.path_, want.prefix, magic, other->prefix, want.magic);
        return failf(EINVAL, "{}: not a {} image (magic {:#010x}, expected {:#010x})", r.path_, want.prefix, magic,
                     want.magic);
    }
    if (major != kFormatMajor)
        return failf(EINVAL, "{}: image format {}.{} is not supported (this criu reads {}.x)", r.path_, major, minor,
                     kFormatMajor);
    if (flags != 0)
        return failf(EINVAL, "{}: unknown header flags {:#x} (this criu knows none)", r.path_, flags);
    r.minor_ = minor;
    r.pos_ += kHeaderSize;
    r.consumed_ = kHeaderSize;
    return r;
}

Expected<size_t> ImageReader::fill(size_t want) {
    size_t avail = buf_.size() - pos_;
    if (avail >= want || !fd_)
        return avail;
    // Drop what was handed out, so the buffer holds at most one record plus a read chunk.
    buf_.erase(0, pos_);
    pos_ = 0;
    // Callers cap `want` by the file size first, so this never exceeds what is on disk.
    uint64_t unread_in_file = remaining() - avail;
    size_t target = static_cast<size_t>(std::min<uint64_t>(std::max(want, kReadChunk), avail + unread_in_file));
    size_t old = buf_.size();
    buf_.resize(target);
    size_t got = TRY(pread_full(fd_.get(), buf_.data() + old, target - old, consumed_ + old, path_));
    buf_.resize(old + got);
    return buf_.size();
}

Expected<bool> ImageReader::read(google::protobuf::MessageLite& msg) {
    uint32_t rec = records_ + 1;
    uint64_t left = remaining();
    if (done_)
        return false;
    if (left == 0)
        return failf(EINVAL, "{}: truncated after record {}: the end marker is missing (the writer did not finish)",
                     path_, records_);
    if (left < kRecordHeaderSize)
        return failf(EINVAL, "{}: record {}: truncated: {} bytes left, a record header needs {}", path_, rec, left,
                     kRecordHeaderSize);
    size_t got = TRY(fill(kRecordHeaderSize));
    if (got < kRecordHeaderSize)
        return failf(EINVAL, "{}: record {}: truncated: file shrank while reading", path_, rec);
    uint32_t len = load_u32(buf_.data() + pos_);
    uint32_t stored = load_u32(buf_.data() + pos_ + 4);
    left -= kRecordHeaderSize;
    if (len == kEndMarker) {
        if (stored != records_)
            return failf(EINVAL, "{}: end marker counts {} records, {} were read", path_, stored, records_);
        if (left != 0)
            return failf(EINVAL, "{}: {} bytes of trailing garbage after the end marker", path_, left);
        pos_ += kRecordHeaderSize;
        consumed_ += kRecordHeaderSize;
        done_ = true;
        return false;
    }
    if (len > kMaxRecordSize)
        return failf(EINVAL, "{}: record {}: length {} exceeds the limit of {} bytes", path_, rec, len,
                     kMaxRecordSize);
    if (len > left)
        return failf(EINVAL, "{}: record {}: truncated: header says {} bytes, {} left", path_, rec, len, left);
    got = TRY(fill(kRecordHeaderSize + len));
    if (got < kRecordHeaderSize + len)
        return failf(EINVAL, "{}: record {}: truncated: file shrank while reading", path_, rec);
    const char* payload = buf_.data() + pos_ + kRecordHeaderSize;
    uint32_t computed = crc32c(payload, len);
    if (computed != stored)
        return failf(EINVAL, "{}: record {}: checksum mismatch (stored {:#010x}, computed {:#010x})", path_, rec,
                     stored, computed);

    msg.Clear();
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(payload), static_cast<int>(len));
    in.SetRecursionLimit(kRecursionLimit);
    if (!msg.MergePartialFromCodedStream(&in) || !in.ConsumedEntireMessage() || in.CurrentPosition() != int(len))
        return failf(EINVAL, "{}: record {}: {} bytes do not parse as {}", path_, rec, len, msg.GetTypeName());
    if (!msg.IsInitialized())
        return failf(EINVAL, "{}: record {}: {} lacks required fields", path_, rec, msg.GetTypeName());

    pos_ += kRecordHeaderSize + len;
    consumed_ += kRecordHeaderSize + len;
    records_ = rec;
    return true;
}

}  // namespace criu
