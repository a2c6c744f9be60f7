// memfd: memfd_create() files, shmem inodes unlinked from birth, named "/memfd:NAME (deleted)".
// The object (name, size, content, seals, mode) is dumped once per inode; each description
// adds its flags and offset. The content goes into the image directory as a sparse raw file
// (like a deleted file's ghost file, not through the page store: it is file data, read with
// pread, not process memory), "memfd-<file id>.raw", holes kept as holes (SEEK_DATA).
//
// Restore: memfd_create() with the same name, the content written back, the mode, then the
// seals (F_ADD_SEALS, last: F_SEAL_WRITE would refuse the writes). Every description is a
// fresh open of that one object through /proc/self/fd; all entries of one inode are one group,
// so an object used by several processes is made once, in criu (prepare_shared).
//
// A memfd the process also maps is the memory restorer's business, but the mapping and the fds
// must be one object: FilesRestorer::memfd_for(dev, ino) hands it out.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// Larger memfds are refused rather than copied into the images. Holes cost nothing.
constexpr uint64_t kMaxMemfdSize = 1ull << 30;
constexpr size_t kMaxMemfdName = 249;  // MFD_NAME_MAX_LEN (mm/memfd.c)
// linux/memfd.h and linux/fcntl.h of 6.3; the system headers (6.1) lack them.
constexpr unsigned kMfdExec = 0x0010;
constexpr uint32_t kSealExec = 0x0020;
constexpr uint32_t kSealBits = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | kSealExec;
constexpr std::string_view kPrefix = "/memfd:";

bool is_memfd(const FdView& v) {
    return S_ISREG(v.st.st_mode) && v.st.st_nlink == 0 && v.link.starts_with(kPrefix);
}

// Copies the data extents of [0, size) of `src` to the same offsets of `dst` (holes stay holes).
Status copy_extents(int src, int dst, uint64_t size) {
    std::vector<char> buf(1u << 20);
    off_t off = 0;
    while (static_cast<uint64_t>(off) < size) {
        off_t data = lseek(src, off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;  // only a hole is left
        if (data < 0)
            return fail_errno("SEEK_DATA at {}", off);
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0)
            return fail_errno("SEEK_HOLE at {}", data);
        hole = std::min<off_t>(hole, static_cast<off_t>(size));
        for (off = data; off < hole;) {
            ssize_t n = pread(src, buf.data(), std::min<size_t>(buf.size(), size_t(hole - off)), off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? fail_errno("reading at {}", off) : failf(EIO, "content ends at {}, {} expected", off, size);
            for (ssize_t done = 0; done < n;) {
                ssize_t w = pwrite(dst, buf.data() + done, size_t(n - done), off + done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return fail_errno("writing at {}", off + done);
                done += w;
            }
            off += n;
        }
    }
    return {};
}

Status precheck_memfd(const FdView& v, const Options&) {
    struct statfs fs;
    if (fstatfs(v.stolen.get(), &fs) != 0)
        return fail_errno("{}: fstatfs", v.where());
    if (fs.f_type == HUGETLBFS_MAGIC)
        return failf(ENOTSUP, "{}: hugetlb memfd {} (not supported yet)", v.where(), v.link);
    if (static_cast<uint64_t>(v.st.st_size) > kMaxMemfdSize)
        return failf(EFBIG, "{}: memfd {} has {} bytes, more than the {} the images may hold", v.where(), v.link,
                     v.st.st_size, kMaxMemfdSize);
    return {};
}

Status write_content(KindDumpContext& c, const FdView& v, const std::string& name) {
    // A fresh read-only description (the target's may be write-only or O_PATH, and its offset
    // must not move); reopening a memfd through the magic link works (KERNEL-NOTES section 2).
    std::string proc = fmt::format("/proc/{}/fd/{}", v.pid, v.fd);
    UniqueFd src(open(proc.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src)
        return fail_errno("{}: cannot reopen memfd to copy it", v.where());
    UniqueFd dst(openat(c.images_dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!dst)
        return fail_errno("{}: cannot create {}", v.where(), name);
    uint64_t size = static_cast<uint64_t>(v.st.st_size);
    Status st = copy_extents(src.get(), dst.get(), size);
    if (st && ftruncate(dst.get(), static_cast<off_t>(size)) != 0)
        st = fail_errno("sizing to {} bytes", size);
    if (!st) {
        unlinkat(c.images_dirfd, name.c_str(), 0);
        return std::unexpected(std::move(st.error().add_context(fmt::format("{}: memfd content {}", v.where(), name))));
    }
    return {};
}

Status dump_memfd(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    auto* m = out.mutable_memfd();
    std::string name = v.path().substr(kPrefix.size());
    int seals = fcntl(v.stolen.get(), F_GET_SEALS);
    if (seals < 0)
        return fail_errno("{}: F_GET_SEALS", v.where());
    m->set_name(name);
    m->set_flags(description_flags(v));
    m->set_pos(v.pos);
    m->set_size(static_cast<uint64_t>(v.st.st_size));
    m->set_seals(static_cast<uint32_t>(seals));
    m->set_mode(v.st.st_mode & 07777);
    m->set_dev(v.st.st_dev);
    m->set_ino(v.st.st_ino);
    InodeKey key{v.st.st_dev, v.st.st_ino};
    if (auto it = c.memfds.find(key); it != c.memfds.end()) {
        m->set_content_file(it->second);
        return {};
    }
    std::string file = fmt::format("memfd-{}.raw", c.file_id);
    TRY_VOID(write_content(c, v, file));
    c.memfds.emplace(key, file);
    m->set_content_file(file);
    c.log.debug("files", "{}: memfd \"{}\" ({} bytes, seals {:#x}) saved as {}", v.where(), name, v.st.st_size, seals,
                file);
    return {};
}

Status validate_memfd(const images::FileEntry& e) {
    if (!e.has_memfd())
        return fail(EINVAL, "memfd entry without MemfdFile data");
    const auto& m = e.memfd();
    std::string what = fmt::format("memfd \"{}\"", m.name().substr(0, std::min(m.name().find('\0'), kMaxMemfdName)));
    if (m.name().size() > kMaxMemfdName || m.name().find('\0') != std::string::npos)
        return failf(EINVAL, "{}: the name ({} bytes) is longer than {} or contains a NUL byte", what, m.name().size(),
                     kMaxMemfdName);
    TRY_VOID_CTX(validate_open_flags(m.flags()), "{}", what);
    if (m.flags() & O_DIRECTORY)
        return failf(EINVAL, "{}: O_DIRECTORY on a memfd", what);
    if (m.size() > kMaxMemfdSize)
        return failf(EFBIG, "{}: size {} exceeds the limit of {}", what, m.size(), kMaxMemfdSize);
    if (m.pos() > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
        return failf(EINVAL, "{}: offset {} is out of range", what, m.pos());
    if (m.seals() & ~kSealBits)
        return failf(EINVAL, "{}: seals {:#x} have unknown bits {:#x}", what, m.seals(), m.seals() & ~kSealBits);
    if (m.mode() & ~07777u)
        return failf(EINVAL, "{}: mode 0{:o} is more than permission bits", what, m.mode());
    const std::string& f = m.content_file();
    if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos || f.find('\0') != std::string::npos)
        return failf(EINVAL, "{}: content file name \"{}\" is not a plain file name", what, f.substr(0, f.find('\0')));
    return {};
}

// Checked at load, so that a missing content file stops the restore before anything exists.
Status validate_memfd_at(int dirfd, const images::FileEntry& e) {
    const auto& m = e.memfd();
    struct stat st;
    if (fstatat(dirfd, m.content_file().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return fail_errno("memfd \"{}\": content file {}", m.name(), m.content_file());
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != m.size())
        return failf(EINVAL, "memfd \"{}\": content file {} holds {} bytes, {} expected", m.name(), m.content_file(),
                     st.st_size, m.size());
    return {};
}

std::string group_memfd(const images::FileEntry& e) {
    return fmt::format("memfd:{}:{}", e.memfd().dev(), e.memfd().ino());
}

Expected<UniqueFd> create_memfd(KindRestoreContext& c, const images::MemfdFile& m) {
    // MFD_EXEC keeps the exec bits the dumped mode may have: with vm.memfd_noexec=1 the kernel
    // would otherwise seal them away (F_SEAL_EXEC) before fchmod. Kernels before 6.3 (EINVAL)
    // and vm.memfd_noexec=2 (EACCES) refuse it; the mode check below then tells.
    UniqueFd fd(memfd_create(m.name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec));
    if (!fd && (errno == EINVAL || errno == EACCES))
        fd.reset(memfd_create(m.name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        return fail_errno("memfd_create");
    if (ftruncate(fd.get(), static_cast<off_t>(m.size())) != 0)
        return fail_errno("sizing to {} bytes", m.size());
    UniqueFd src(openat(c.images_dirfd, m.content_file().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!src)
        return fail_errno("content file {}", m.content_file());
    struct stat st;
    if (fstat(src.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != m.size())
        return failf(EINVAL, "content file {} does not hold {} bytes", m.content_file(), m.size());
    TRY_VOID_CTX(copy_extents(src.get(), fd.get(), m.size()), "refilling from {}", m.content_file());
    if (fstat(fd.get(), &st) != 0)
        return fail_errno("fstat");
    if ((st.st_mode & 07777) != m.mode() && fchmod(fd.get(), m.mode()) != 0)
        return fail_errno("fchmod 0{:o} (it is 0{:o})", m.mode(), st.st_mode & 07777);
    if (m.seals() != 0 && fcntl(fd.get(), F_ADD_SEALS, m.seals()) != 0)
        return fail_errno("F_ADD_SEALS {:#x}", m.seals());
    return c.to_high(std::move(fd));
}

Expected<UniqueFd> open_memfd(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& m = e.memfd();
    int obj = TRY(memfd_object(c, e));
    // The magic link is a symlink: O_NOFOLLOW would refuse it.
    UniqueFd fd(open(fmt::format("/proc/self/fd/{}", obj).c_str(), open_flags(m.flags()) & ~O_NOFOLLOW));
    if (!fd)
        return fail_errno("memfd \"{}\": open with flags 0{:o}", m.name(), m.flags());
    if (m.pos() != 0 && !(m.flags() & O_PATH) &&
        lseek(fd.get(), static_cast<off_t>(m.pos()), SEEK_SET) != static_cast<off_t>(m.pos()))
        return fail_errno("memfd \"{}\": restoring offset {}", m.name(), m.pos());
    return c.to_high(std::move(fd));
}

}  // namespace

Expected<int> memfd_object(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& m = e.memfd();
    InodeKey key{m.dev(), m.ino()};
    if (auto it = c.memfds.find(key); it != c.memfds.end())
        return it->second.get();
    UniqueFd fd = TRY_CTX(create_memfd(c, m), "memfd \"{}\"", m.name());
    c.log->debug("files", "memfd \"{}\" (dumped as {}:{}) recreated, {} bytes, seals {:#x}", m.name(), m.dev(),
                 m.ino(), m.size(), m.seals());
    int raw = fd.get();
    c.memfds.emplace(key, std::move(fd));
    return raw;
}

const FdKindOps kMemfdKind{
    .name = "memfd",
    .kind = images::FD_MEMFD,
    .match = is_memfd,
    .precheck = precheck_memfd,
    .dump = dump_memfd,
    .validate = validate_memfd,
    .validate_at = validate_memfd_at,
    .group = group_memfd,
    .open = open_memfd,
};

}  // namespace criu
