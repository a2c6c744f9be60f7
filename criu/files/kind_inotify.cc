// inotify: every watch (wd, mask, watched inode) from fdinfo lines
// "inotify wd:1 ino:3c51a sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1
//  f_handle:1ac5030000000000" (wd, ino, sdev and mask in hex).
//
// fdinfo names the inode, not a path. The dump opens it with open_by_handle_at() (needs
// CAP_DAC_READ_SEARCH) on a mount of its filesystem and records the path the kernel gives for
// it, checked to lead back to the same inode; restore adds the watches by path, each under
// its old wd (INOTIFY_IOC_SETNEXTWD before inotify_add_watch(), needs CONFIG_CHECKPOINT_RESTORE).
//
// Events queued in the instance and not read yet are NOT preserved: they are lost, and both
// the dump and the restore say so in their logs as a warning.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// linux/inotify.h; not included because it clashes with glibc's <sys/inotify.h>.
constexpr unsigned long kInotifyIocSetNextWd = _IOW('I', 0, int32_t);
// Every fdinfo line of a watch is longer than 64 bytes, so no fdinfo we accept lists more.
constexpr size_t kMaxInotifyWatches = kMaxFdinfoSize / 64;
// What fdinfo shows of a mark (inotify_mark_user_mask()): events, IN_ONESHOT, IN_EXCL_UNLINK.
constexpr uint32_t kWatchMaskBits = IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK;
constexpr uint32_t kMaxHandleBytes = 128;  // MAX_HANDLE_SZ

struct WatchLine {
    int wd;
    uint64_t ino;
    uint32_t sdev;  // the kernel's encoding: major << 20 | minor
    uint32_t mask;
    uint32_t handle_bytes;
    int handle_type;
    std::string handle;  // raw bytes
};

Expected<std::vector<WatchLine>> parse_inotify(const FdView& v) {
    if (v.fdinfo_truncated)
        return failf(E2BIG, "{}: inotify with more watches than {} bytes of fdinfo list", v.where(), kMaxFdinfoSize);
    std::vector<WatchLine> out;
    std::string_view text = v.fdinfo;
    for (size_t at = 0; at < text.size();) {
        size_t eol = text.find('\n', at);
        std::string_view line = text.substr(at, eol == std::string_view::npos ? std::string_view::npos : eol - at);
        at = eol == std::string_view::npos ? text.size() : eol + 1;
        if (!line.starts_with("inotify "))
            continue;
        auto wd = parse_number<int>(fdinfo_token(line, "wd"), 16);
        auto ino = parse_number<uint64_t>(fdinfo_token(line, "ino"), 16);
        auto sdev = parse_number<uint32_t>(fdinfo_token(line, "sdev"), 16);
        auto mask = parse_number<uint32_t>(fdinfo_token(line, "mask"), 16);
        if (!wd || !ino || !sdev || !mask)
            return failf(EINVAL, "{}: cannot parse inotify fdinfo line \"{}\"", v.where(), line);
        // Without a file handle (a filesystem that cannot export one) the inode cannot be found.
        auto bytes = parse_number<uint32_t>(fdinfo_token(line, "fhandle-bytes"), 16);
        auto type = parse_number<int>(fdinfo_token(line, "fhandle-type"), 16);
        std::string_view hex = fdinfo_token(line, "f_handle");
        if (!bytes || !type || *bytes > kMaxHandleBytes || hex.size() != 2 * *bytes)
            return failf(ENOTSUP, "{}: inotify watch wd {} on inode {} of device {}:{}: its filesystem gives no "
                                  "file handle, so the watched file cannot be found",
                         v.where(), *wd, *ino, *sdev >> 20, *sdev & 0xfffff);
        WatchLine w{*wd, *ino, *sdev, *mask, *bytes, *type, {}};
        for (size_t i = 0; i < hex.size(); i += 2) {
            auto b = parse_number<uint8_t>(hex.substr(i, 2), 16);
            if (!b)
                return failf(EINVAL, "{}: cannot parse f_handle \"{}\"", v.where(), hex);
            w.handle.push_back(static_cast<char>(*b));
        }
        out.push_back(std::move(w));
    }
    return out;
}

// mountinfo escapes blanks, newlines and backslashes as \ooo.
std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            auto o = parse_number<int>(s.substr(i + 1, 3), 8);
            if (o) {
                out.push_back(static_cast<char>(*o));
                i += 3;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

// An fd on a mount of the filesystem with kernel device `sdev`, as `pid` sees it:
// open_by_handle_at() needs one. Mounts of the filesystem's root come first: a handle of an
// inode outside a bind mount's subtree would get no usable path through it. A mount point
// hidden under another mount opens that other filesystem: st_dev tells.
Expected<UniqueFd> open_mount_of(pid_t pid, uint32_t sdev) {
    unsigned ma = sdev >> 20, mi = sdev & 0xfffff;
    std::string want = fmt::format("{}:{}", ma, mi);
    std::ifstream in(fmt::format("/proc/{}/mountinfo", pid));
    if (!in)
        return failf(ENOENT, "cannot read /proc/{}/mountinfo", pid);
    std::vector<std::string> roots, others;
    std::string line;
    while (std::getline(in, line)) {
        // "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw": id, parent, dev, root, mount point.
        std::vector<std::string_view> f;
        std::string_view rest = line;
        for (int i = 0; i < 5 && !rest.empty(); ++i) {
            size_t sp = rest.find(' ');
            f.push_back(rest.substr(0, sp));
            rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
        }
        if (f.size() == 5 && f[2] == want)
            (f[3] == "/" ? roots : others).push_back(unescape(f[4]));
    }
    roots.insert(roots.end(), others.begin(), others.end());
    for (const auto& mp : roots) {
        // open_by_handle_at() refuses an O_PATH mount fd (EBADF); O_DIRECTORY keeps a mount
        // point that is a device node or a FIFO from being opened for real.
        std::string path = fmt::format("/proc/{}/root{}", pid, mp);
        UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        struct stat st;
        if (fd && fstat(fd.get(), &st) == 0 && st.st_dev == makedev(ma, mi))
            return fd;
    }
    return failf(ENOENT, "no reachable mount of device {} in the mount namespace of pid {}", want, pid);
}

Expected<images::InotifyWatch> find_watched(const FdView& v, const WatchLine& w,
                                            std::map<uint32_t, UniqueFd>& mounts) {
    std::string what = fmt::format("inotify watch wd {} (inode {} of device {}:{})", w.wd, w.ino, w.sdev >> 20,
                                   w.sdev & 0xfffff);
    auto m = mounts.find(w.sdev);
    if (m == mounts.end())
        m = mounts.emplace(w.sdev, TRY_CTX(open_mount_of(v.pid, w.sdev), "{}: {}", v.where(), what)).first;
    std::vector<char> buf(sizeof(file_handle) + w.handle_bytes);
    auto* fh = reinterpret_cast<file_handle*>(buf.data());
    fh->handle_bytes = w.handle_bytes;
    fh->handle_type = w.handle_type;
    std::copy(w.handle.begin(), w.handle.end(), fh->f_handle);
    UniqueFd fd(open_by_handle_at(m->second.get(), fh, O_PATH | O_CLOEXEC));
    if (!fd) {
        if (errno == ESTALE)
            return failf(ENOTSUP, "{}: {}: the watched file was deleted; a watch on a deleted file cannot be "
                                  "restored", v.where(), what);
        return fail_errno("{}: {}: open_by_handle_at (needs CAP_DAC_READ_SEARCH)", v.where(), what);
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0)
        return fail_errno("{}: {}: fstat", v.where(), what);
    if (st.st_nlink == 0)
        return failf(ENOTSUP, "{}: {}: the watched file was deleted; a watch on a deleted file cannot be restored",
                     v.where(), what);
    char link[PATH_MAX + 1];
    ssize_t n = readlink(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), link, sizeof link);
    if (n < 0 || static_cast<size_t>(n) >= sizeof link)
        return fail_errno("{}: {}: reading its path", v.where(), what);
    std::string path(link, static_cast<size_t>(n));
    // A handle may decode to a dentry not connected to the tree (a file whose name left the
    // dentry cache): its "path" leads nowhere, or elsewhere. Only a path that leads back to the
    // inode is recorded.
    struct stat back;
    if (path.empty() || path[0] != '/' || lstat(path.c_str(), &back) != 0 || back.st_ino != st.st_ino ||
        back.st_dev != st.st_dev)
        return failf(ENOTSUP, "{}: {}: no path leads to the watched file (the kernel names it \"{}\")", v.where(),
                     what, path);
    images::InotifyWatch out;
    out.set_wd(w.wd);
    out.set_mask(w.mask);
    out.set_path(path);
    out.set_dev(st.st_dev);
    out.set_ino(st.st_ino);
    return out;
}

Expected<images::InotifyFile> read_watches(const FdView& v) {
    images::InotifyFile f;
    f.set_flags(description_flags(v));
    std::map<uint32_t, UniqueFd> mounts;
    for (const auto& w : TRY(parse_inotify(v)))
        *f.add_watches() = TRY(find_watched(v, w, mounts));
    return f;
}

Status precheck_inotify(const FdView& v, const Options&) {
    TRY(read_watches(v));
    return {};
}

Status dump_inotify(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    images::InotifyFile f = TRY(read_watches(v));
    int queued = 0;
    if (ioctl(v.stolen.get(), FIONREAD, &queued) != 0)
        return fail_errno("{}: FIONREAD", v.where());
    f.set_pending_bytes(static_cast<uint32_t>(std::max(queued, 0)));
    c.log.warn("files", "{}: inotify with {} watches: events not read by the process ({} bytes queued now, and any "
               "that arrive until it is restored) are not preserved", v.where(), f.watches_size(), queued);
    *out.mutable_inotify() = std::move(f);
    return {};
}

Status validate_inotify(const images::FileEntry& e) {
    if (!e.has_inotify())
        return fail(EINVAL, "inotify entry without InotifyFile data");
    const auto& f = e.inotify();
    TRY_VOID_CTX(validate_anon_flags(f.flags(), O_RDONLY), "inotify");
    if (static_cast<size_t>(f.watches_size()) > kMaxInotifyWatches)
        return failf(E2BIG, "inotify with {} watches, more than the {} a dump can hold", f.watches_size(),
                     kMaxInotifyWatches);
    std::set<int> wds;
    for (const auto& w : f.watches()) {
        if (w.wd() <= 0)
            return failf(EINVAL, "inotify watch descriptor {} is not positive", w.wd());
        if (!wds.insert(w.wd()).second)
            return failf(EINVAL, "inotify watch descriptor {} appears twice", w.wd());
        if ((w.mask() & ~kWatchMaskBits) || !(w.mask() & IN_ALL_EVENTS))
            return failf(EINVAL, "inotify watch {}: mask {:#x} is not a set of events and IN_ONESHOT/IN_EXCL_UNLINK",
                         w.wd(), w.mask());
        TRY_VOID_CTX(validate_path(w.path()), "inotify watch {}", w.wd());
    }
    return {};
}

Expected<UniqueFd> open_inotify(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& f = e.inotify();
    UniqueFd fd(inotify_init1(IN_CLOEXEC));
    if (!fd)
        return fail_errno("inotify_init1");
    std::vector<const images::InotifyWatch*> watches;
    for (const auto& w : f.watches())
        watches.push_back(&w);
    std::sort(watches.begin(), watches.end(), [](auto* a, auto* b) { return a->wd() < b->wd(); });
    for (const auto* w : watches) {
        // The next inotify_add_watch() takes the lowest free wd at or above this one.
        int32_t next = w->wd();
        if (ioctl(fd.get(), kInotifyIocSetNextWd, next) != 0) {
            if (errno == ENOTTY)
                return fail(ENOTTY, "this kernel has no INOTIFY_IOC_SETNEXTWD (CONFIG_CHECKPOINT_RESTORE is off): "
                                    "inotify watch descriptors cannot be restored");
            return fail_errno("INOTIFY_IOC_SETNEXTWD {}", next);
        }
        // The path names the watched inode itself (a symlink too): never follow it.
        int wd = inotify_add_watch(fd.get(), w->path().c_str(), w->mask() | IN_DONT_FOLLOW);
        if (wd < 0)
            return fail_errno("inotify watch {} on {}", w->wd(), w->path());
        if (wd != w->wd())
            return failf(EEXIST, "inotify watch {} on {} got watch descriptor {}: another watch of this instance "
                                 "has the same file now", w->wd(), w->path(), wd);
        struct stat st;
        if (lstat(w->path().c_str(), &st) == 0 && (st.st_ino != w->ino() || st.st_dev != w->dev()))
            c.log->warn("files", "inotify watch {}: {} is inode {}:{} now, it was {}:{} when dumped", w->wd(),
                        w->path(), st.st_dev, st.st_ino, w->dev(), w->ino());
    }
    if (f.pending_bytes() != 0)
        c.log->warn("files", "inotify: {} bytes of events queued at dump time are lost: pending events are not "
                    "restored", f.pending_bytes());
    TRY_VOID_CTX(set_status_flags(fd.get(), f.flags()), "inotify");
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kInotifyKind{
    .name = "inotify",
    .kind = images::FD_INOTIFY,
    .match = [](const FdView& v) { return v.link == "anon_inode:inotify"; },
    .precheck = precheck_inotify,
    .dump = dump_inotify,
    .validate = validate_inotify,
    .open = open_inotify,
};

}  // namespace criu
