#include "migrate/cache/cache_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu/core/unique_fd.h"

namespace criu {

Status fsync_dir(int dirfd) {
    if (::fsync(dirfd) != 0)
        return fail_errno("fsync of the cache directory");
    return {};
}

static Status write_all(int fd, const uint8_t* p, size_t n, const std::string& name) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fail_errno("write {}", name);
        if (w == 0)
            return failf(ENOSPC, "write {}: no progress", name);
        p += w;
        n -= static_cast<size_t>(w);
    }
    return {};
}

Status write_file_atomic(int dirfd, const std::string& name, std::span<const uint8_t> bytes) {
    std::string tmp = name + ".tmp";
    UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd)
        return fail_errno("create {}", tmp);
    Status st = write_all(fd.get(), bytes.data(), bytes.size(), tmp);
    if (st && ::fsync(fd.get()) != 0)
        st = fail_errno("fsync {}", tmp);
    if (!st) {
        ::unlinkat(dirfd, tmp.c_str(), 0);  // a half-written temp file is only garbage
        return st;
    }
    fd.reset();
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
        auto err = fail_errno("rename {} to {}", tmp, name);
        ::unlinkat(dirfd, tmp.c_str(), 0);
        return err;
    }
    return fsync_dir(dirfd);
}

Expected<std::optional<std::vector<uint8_t>>> read_file_capped(int dirfd, const std::string& name,
                                                               uint64_t max_bytes) {
    UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT)
            return std::optional<std::vector<uint8_t>>();
        return fail_errno("open {}", name);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0)
        return fail_errno("fstat {}", name);
    if (static_cast<uint64_t>(st.st_size) > max_bytes)
        return failf(EFBIG, "{} is {} bytes, more than the {} this reader accepts", name, st.st_size,
                     max_bytes);
    std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::read(fd.get(), buf.data() + done, buf.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("read {}", name);
        if (n == 0)
            break;  // shrank under us (a live writer truncating a torn record)
        done += static_cast<size_t>(n);
    }
    buf.resize(done);
    return std::optional<std::vector<uint8_t>>(std::move(buf));
}

}  // namespace criu
