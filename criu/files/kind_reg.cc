// Regular files and directories, by path, with open flags and offset. A deleted (unlinked) file
// cannot be linked back (linkat through /proc gives ENOENT, KERNEL-NOTES section 6), so its
// content is stored as a "ghost file" in the image directory; restore recreates it under its
// old name, unlinks it at once and opens it, so the process sees "path (deleted)" with the
// same content, flags and offset.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// A deleted file larger than this is refused rather than copied into the images.
constexpr uint64_t kMaxGhostSize = 64ull << 20;

// Copies `size` bytes from offset 0 of `src` to `dst`. sendfile with an explicit offset
// leaves the file offset of `src` alone (it may share the target's description).
Status copy_content(int src, int dst, uint64_t size) {
    off_t off = 0;
    while (static_cast<uint64_t>(off) < size) {
        ssize_t n = sendfile(dst, src, &off, static_cast<size_t>(std::min<uint64_t>(size - off, 1u << 30)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("copying content at offset {}", off);
        if (n == 0)
            return failf(EIO, "content ends at {} bytes, {} expected", off, size);
    }
    return {};
}

Status precheck_reg(const FdView& v, const Options&) {
    if (v.st.st_nlink != 0)
        return {};
    if (S_ISDIR(v.st.st_mode))
        return failf(ENOTSUP, "{}: deleted directory {} cannot be restored", v.where(), v.path());
    if (static_cast<uint64_t>(v.st.st_size) > kMaxGhostSize)
        return failf(EFBIG, "{}: deleted file {} has {} bytes, more than the {} a ghost file may hold", v.where(),
                     v.path(), v.st.st_size, kMaxGhostSize);
    return {};
}

Status write_ghost(KindDumpContext& c, const FdView& v, const std::string& name) {
    // A fresh description through the magic link works for unlinked files and does not touch
    // the target's offset; the target's own fd may be write-only or O_PATH.
    std::string proc = fmt::format("/proc/{}/fd/{}", v.pid, v.fd);
    UniqueFd src(open(proc.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src)
        return fail_errno("{}: cannot reopen deleted file {} to copy it", v.where(), v.path());
    UniqueFd dst(openat(c.images_dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!dst)
        return fail_errno("{}: cannot create ghost file {}", v.where(), name);
    Status st = copy_content(src.get(), dst.get(), static_cast<uint64_t>(v.st.st_size));
    if (!st) {
        unlinkat(c.images_dirfd, name.c_str(), 0);
        return std::unexpected(std::move(st.error().add_context(fmt::format("{}: ghost file {}", v.where(), name))));
    }
    return {};
}

Status dump_reg(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    auto* r = out.mutable_reg();
    uint32_t flags = v.flags & ~uint32_t(O_CLOEXEC);  // the fd flag lives in FdEntry
    if (S_ISREG(v.st.st_mode))
        flags &= ~uint32_t(O_TMPFILE);  // an O_TMPFILE file is restored as a ghost file
    r->set_path(v.path());
    r->set_flags(flags);
    r->set_pos(v.pos);
    r->set_mode(v.st.st_mode);
    r->set_size(static_cast<uint64_t>(v.st.st_size));
    r->set_dev(v.st.st_dev);
    r->set_ino(v.st.st_ino);
    r->set_mnt_id(static_cast<uint32_t>(v.mnt_id));
    if (v.st.st_nlink != 0)
        return {};
    r->set_deleted(true);
    InodeKey key{v.st.st_dev, v.st.st_ino};
    if (auto it = c.ghosts.find(key); it != c.ghosts.end()) {
        r->set_ghost_file(it->second);
        return {};
    }
    std::string name = fmt::format("ghost-file-{}.raw", c.file_id);
    TRY_VOID(write_ghost(c, v, name));
    c.ghosts.emplace(key, name);
    r->set_ghost_file(name);
    c.log.debug("files", "{}: deleted file {} ({} bytes) saved as {}", v.where(), v.path(), v.st.st_size, name);
    return {};
}

Status validate_reg(const images::FileEntry& e) {
    if (!e.has_reg())
        return fail(EINVAL, "regular-file entry without RegFile data");
    const auto& r = e.reg();
    TRY_VOID(validate_path(r.path()));
    TRY_VOID(validate_open_flags(r.flags()));
    if (!S_ISREG(r.mode()) && !S_ISDIR(r.mode()))
        return failf(EINVAL, "{}: mode 0{:o} is neither a regular file nor a directory", r.path(), r.mode());
    if (r.pos() > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
        return failf(EINVAL, "{}: offset {} is out of range", r.path(), r.pos());
    if (!r.deleted())
        return {};
    const std::string& g = r.ghost_file();
    if (g.empty() || g == "." || g == ".." || g.find('/') != std::string::npos || g.find('\0') != std::string::npos)
        return failf(EINVAL, "{}: ghost file name \"{}\" is not a plain file name", r.path(), g.substr(0, g.find('\0')));
    if (!S_ISREG(r.mode()))
        return failf(EINVAL, "{}: only a regular file can be a ghost file", r.path());
    if (r.size() > kMaxGhostSize)
        return failf(EFBIG, "{}: ghost file of {} bytes exceeds the limit of {}", r.path(), r.size(), kMaxGhostSize);
    return {};
}

// Checked at load, so that a missing ghost stops the restore before anything exists.
Status validate_reg_at(int dirfd, const images::FileEntry& e) {
    const auto& r = e.reg();
    if (!r.deleted())
        return {};
    struct stat st;
    if (fstatat(dirfd, r.ghost_file().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return fail_errno("ghost file {}", r.ghost_file());
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != r.size())
        return failf(EINVAL, "ghost file {} holds {} bytes, {} expected", r.ghost_file(), st.st_size, r.size());
    return {};
}

std::string group_reg(const images::FileEntry& e) {
    return e.reg().deleted() ? "ghost:" + e.reg().ghost_file() : std::string();
}

// The recreated inode of a deleted file, created once per ghost file (several descriptions,
// in one or several processes, may refer to it).
Expected<int> ghost_inode(KindRestoreContext& c, const images::RegFile& r) {
    if (auto it = c.ghosts.find(r.ghost_file()); it != c.ghosts.end())
        return it->second.get();
    UniqueFd src(openat(c.images_dirfd, r.ghost_file().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!src)
        return fail_errno("ghost file {} of deleted {}", r.ghost_file(), r.path());
    struct stat st;
    if (fstat(src.get(), &st) != 0)
        return fail_errno("fstat ghost file {}", r.ghost_file());
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != r.size())
        return failf(EINVAL, "ghost file {} holds {} bytes, files.img says {}", r.ghost_file(), st.st_size, r.size());

    // Under its old name when that is free, so /proc/PID/fd shows the same "path (deleted)".
    UniqueFd fd;
    std::string made;
    for (int i = 0; i < 100 && !fd; ++i) {
        made = i == 0 ? r.path() : fmt::format("{}.criu-ghost-{}-{}", r.path(), getpid(), i);
        fd.reset(open(made.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (!fd && errno != EEXIST)
            return fail_errno("cannot recreate deleted file {}", made);
    }
    if (!fd)
        return failf(EEXIST, "cannot recreate deleted file {}: every temporary name is taken", r.path());
    // Unlinked before anything else can fail, so no failure path leaves it in the filesystem.
    if (unlink(made.c_str()) != 0)
        return fail_errno("cannot unlink recreated ghost {}", made);
    TRY_VOID_CTX(copy_content(src.get(), fd.get(), r.size()), "refilling deleted file {}", r.path());
    if (fchmod(fd.get(), r.mode() & 07777) != 0)
        return fail_errno("fchmod recreated deleted file {}", r.path());
    UniqueFd high = TRY(c.to_high(std::move(fd)));
    int raw = high.get();
    c.ghosts.emplace(r.ghost_file(), std::move(high));
    return raw;
}

Expected<UniqueFd> open_reg(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& r = e.reg();
    int flags = open_flags(r.flags());
    UniqueFd fd;
    if (r.deleted()) {
        int ghost = TRY(ghost_inode(c, r));
        // The magic link is a symlink: O_NOFOLLOW would refuse it.
        fd.reset(open(fmt::format("/proc/self/fd/{}", ghost).c_str(), flags & ~O_NOFOLLOW));
    } else {
        fd.reset(open(r.path().c_str(), flags));
    }
    if (!fd)
        return fail_errno("open {} with flags 0{:o}", r.path(), r.flags());
    struct stat st;
    if (fstat(fd.get(), &st) != 0)
        return fail_errno("fstat {}", r.path());
    if ((st.st_mode & S_IFMT) != (r.mode() & S_IFMT))
        return failf(EINVAL, "{} was a {} when dumped and is a {} now", r.path(),
                     S_ISDIR(r.mode()) ? "directory" : "regular file", S_ISDIR(st.st_mode) ? "directory" : "non-directory");
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) != r.size())
        c.log->warn("files", "{} has {} bytes, it had {} when dumped", r.path(), st.st_size, r.size());
    if (r.pos() != 0 && !(r.flags() & O_PATH) &&
        lseek(fd.get(), static_cast<off_t>(r.pos()), SEEK_SET) != static_cast<off_t>(r.pos()))
        return fail_errno("{}: restoring offset {}", r.path(), r.pos());
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kRegFileKind{
    .name = "regular file",
    .kind = images::FD_REG,
    .match = [](const FdView& v) {
        return (S_ISREG(v.st.st_mode) || S_ISDIR(v.st.st_mode)) && !v.link.empty() && v.link[0] == '/';
    },
    .precheck = precheck_reg,
    .dump = dump_reg,
    .validate = validate_reg,
    .validate_at = validate_reg_at,
    .group = group_reg,
    .open = open_reg,
};

}  // namespace criu
