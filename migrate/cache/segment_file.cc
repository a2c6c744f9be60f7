#include "migrate/cache/segment_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "criu/core/assert.h"
#include "migrate/cache/chunk_record.h"

namespace criu {

std::string SegmentFile::file_name(uint32_t id) { return fmt::format("seg-{:08x}.dat", id); }

bool SegmentFile::parse_name(const std::string& name, uint32_t& id) {
    if (name.size() != 16 || name.compare(0, 4, "seg-") != 0 || name.compare(12, 4, ".dat") != 0)
        return false;
    uint32_t v = 0;
    for (size_t i = 4; i < 12; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | static_cast<uint32_t>(d);
    }
    id = v;
    return true;
}

SegmentFile::SegmentFile(UniqueFd fd, uint32_t id, bool direct)
    : fd_(std::move(fd)), id_(id), direct_(direct), name_(file_name(id)) {}

static Expected<UniqueFd> open_segment(int dirfd, const std::string& name, int flags, bool& direct) {
    if (direct) {
        int fd = ::openat(dirfd, name.c_str(), flags | O_DIRECT | O_CLOEXEC, 0600);
        if (fd >= 0)
            return UniqueFd(fd);
        if (errno != EINVAL)
            return fail_errno("open {}", name);
        direct = false;  // filesystem without O_DIRECT
    }
    int fd = ::openat(dirfd, name.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno("open {}", name);
    return UniqueFd(fd);
}

Expected<std::shared_ptr<SegmentFile>> SegmentFile::create(int dirfd, uint32_t id, bool direct_io) {
    bool direct = direct_io;
    UniqueFd fd = TRY(open_segment(dirfd, file_name(id), O_RDWR | O_CREAT | O_EXCL, direct));
    return std::shared_ptr<SegmentFile>(new SegmentFile(std::move(fd), id, direct));
}

Expected<std::shared_ptr<SegmentFile>> SegmentFile::open(int dirfd, uint32_t id, bool writable,
                                                         bool direct_io) {
    bool direct = direct_io;
    UniqueFd fd = TRY(open_segment(dirfd, file_name(id), writable ? O_RDWR : O_RDONLY, direct));
    return std::shared_ptr<SegmentFile>(new SegmentFile(std::move(fd), id, direct));
}

void SegmentFile::drop_direct_io() {
    int fl = ::fcntl(fd_.get(), F_GETFL);
    if (fl >= 0)
        ::fcntl(fd_.get(), F_SETFL, fl & ~O_DIRECT);
    direct_ = false;
}

Status SegmentFile::write_at(uint64_t offset, std::span<const uint8_t> rec) {
    CRIU_ASSERT(offset % kRecordAlign == 0 && rec.size() % kRecordAlign == 0);
    size_t done = 0;
    while (done < rec.size()) {
        ssize_t n = ::pwrite(fd_.get(), rec.data() + done, rec.size() - done, offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL && direct_) {
            drop_direct_io();
            continue;
        }
        if (n < 0)
            return fail_errno("write {} bytes to {} at offset {}", rec.size(), name_, offset);
        if (n == 0)
            return failf(ENOSPC, "write {} bytes to {} at offset {}: no progress", rec.size(), name_, offset);
        done += static_cast<size_t>(n);
    }
    return {};
}

Status SegmentFile::write_at(uint64_t offset, std::span<const struct iovec> recs) {
    std::vector<struct iovec> iov(recs.begin(), recs.end());
    size_t total = 0;
    for (const auto& v : iov)
        total += v.iov_len;
    CRIU_ASSERT(offset % kRecordAlign == 0 && total % kRecordAlign == 0);
    size_t done = 0, first = 0;
    while (done < total) {
        // At most IOV_MAX vectors a call; the kernel may also stop short of the end.
        int cnt = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
        ssize_t n = ::pwritev(fd_.get(), iov.data() + first, cnt, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EINVAL && direct_) {
            drop_direct_io();
            continue;
        }
        if (n < 0)
            return fail_errno("write {} bytes to {} at offset {}", total - done, name_, offset + done);
        if (n == 0)
            return failf(ENOSPC, "write {} bytes to {} at offset {}: no progress", total - done, name_,
                         offset + done);
        done += static_cast<size_t>(n);
        for (size_t left = static_cast<size_t>(n); left > 0;) {
            size_t take = std::min(left, iov[first].iov_len);
            iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
            iov[first].iov_len -= take;
            left -= take;
            if (iov[first].iov_len == 0)
                first++;
        }
    }
    return {};
}

Status SegmentFile::read_at(uint64_t offset, std::span<uint8_t> buf) const {
    size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::pread(fd_.get(), buf.data() + done, buf.size() - done, offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("read {} bytes from {} at offset {}", buf.size(), name_, offset);
        if (n == 0)
            return failf(EIO, "read {} bytes from {} at offset {}: file ends after {} bytes", buf.size(),
                         name_, offset, offset + done);
        done += static_cast<size_t>(n);
    }
    return {};
}

Status SegmentFile::sync() {
    if (::fdatasync(fd_.get()) != 0)
        return fail_errno("fdatasync {}", name_);
    return {};
}

Expected<uint64_t> SegmentFile::file_size() const {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0)
        return fail_errno("fstat {}", name_);
    return static_cast<uint64_t>(st.st_size);
}

}  // namespace criu
