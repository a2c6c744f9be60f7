#include "criu/files/fd_view.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

namespace criu {

std::string FdView::where() const { return fmt::format("pid {} fd {}", pid, fd); }

std::string FdView::path() const {
    constexpr std::string_view deleted = " (deleted)";
    // Only a file that really is unlinked gets the suffix removed: a live file may be named
    // "x (deleted)".
    if (st.st_nlink == 0 && std::string_view(link).ends_with(deleted))
        return link.substr(0, link.size() - deleted.size());
    return link;
}

Expected<UniqueFd> open_pidfd(pid_t pid) {
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0)
        return fail_errno("pid {}: pidfd_open", pid);
    return UniqueFd(fd);
}

Expected<std::vector<int>> list_target_fds(pid_t pid) {
    std::string dir = fmt::format("/proc/{}/fd", pid);
    DIR* d = opendir(dir.c_str());
    if (!d)
        return fail_errno("pid {}: cannot list {}", pid, dir);
    std::vector<int> fds;
    errno = 0;
    while (dirent* e = readdir(d)) {
        std::string_view name = e->d_name;
        int fd = -1;
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (ec == std::errc() && p == name.data() + name.size())
            fds.push_back(fd);
    }
    int err = errno;
    closedir(d);
    if (err)
        return fail(err, fmt::format("pid {}: reading {}", pid, dir));
    std::sort(fds.begin(), fds.end());
    return fds;
}

std::string_view fdinfo_field(std::string_view text, std::string_view key) {
    size_t at = 0;
    while (at < text.size()) {
        size_t eol = text.find('\n', at);
        if (eol == std::string_view::npos)
            eol = text.size();
        std::string_view line = text.substr(at, eol - at);
        if (line.starts_with(key) && line.size() > key.size() && line[key.size()] == ':') {
            line.remove_prefix(key.size() + 1);
            while (!line.empty() && (line.front() == '\t' || line.front() == ' '))
                line.remove_prefix(1);
            return line;
        }
        at = eol + 1;
    }
    return {};
}

std::string_view fdinfo_token(std::string_view line, std::string_view key) {
    for (size_t at = line.find(key); at != std::string_view::npos; at = line.find(key, at + 1)) {
        size_t colon = at + key.size();
        // "ino:" must not match inside "fhandle-ino:" or another key ending in it.
        if ((at != 0 && line[at - 1] != ' ' && line[at - 1] != '\t') || colon >= line.size() || line[colon] != ':')
            continue;
        std::string_view rest = line.substr(colon + 1);
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
            rest.remove_prefix(1);
        return rest.substr(0, rest.find_first_of(" \t"));
    }
    return {};
}

Expected<std::string> read_fdinfo(pid_t pid, int fd, bool* truncated) {
    std::string path = fmt::format("/proc/{}/fdinfo/{}", pid, fd);
    UniqueFd f(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f)
        return fail_errno("open {}", path);
    std::string out;
    char buf[65536];
    if (truncated)
        *truncated = false;
    for (;;) {
        ssize_t n = read(f.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("read {}", path);
        if (n == 0)
            break;
        out.append(buf, static_cast<size_t>(n));
        // fdinfo of an epoll or inotify fd grows with its entries.
        if (out.size() > kMaxFdinfoSize) {
            out.resize(kMaxFdinfoSize);
            if (truncated)
                *truncated = true;
            break;
        }
    }
    return out;
}

Expected<FdView> inspect_target_fd(int pidfd, pid_t pid, int fd) {
    FdView v;
    v.pid = pid;
    v.fd = fd;

    int stolen = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
    if (stolen < 0)
        return fail_errno("{}: pidfd_getfd", v.where());
    v.stolen.reset(stolen);
    if (fstat(stolen, &v.st) != 0)
        return fail_errno("{}: fstat", v.where());

    std::string lpath = fmt::format("/proc/{}/fd/{}", pid, fd);
    char buf[PATH_MAX + 16];
    ssize_t n = readlink(lpath.c_str(), buf, sizeof buf);
    if (n < 0)
        return fail_errno("{}: readlink {}", v.where(), lpath);
    if (static_cast<size_t>(n) >= sizeof buf)
        return failf(ENAMETOOLONG, "{}: the path of the file is longer than PATH_MAX", v.where());
    v.link.assign(buf, static_cast<size_t>(n));

    v.fdinfo = TRY_CTX(read_fdinfo(pid, fd, &v.fdinfo_truncated), "{}", v.where());
    std::string_view pos = fdinfo_field(v.fdinfo, "pos");
    std::string_view flags = fdinfo_field(v.fdinfo, "flags");
    std::string_view mnt = fdinfo_field(v.fdinfo, "mnt_id");
    // fdinfo prints pos as %lld and flags as 0%o (fs/proc/fd.c).
    if (std::from_chars(pos.data(), pos.data() + pos.size(), v.pos).ec != std::errc() ||
        std::from_chars(flags.data(), flags.data() + flags.size(), v.flags, 8).ec != std::errc())
        return failf(EINVAL, "{}: cannot parse fdinfo (pos {}, flags {})", v.where(), pos, flags);
    if (!mnt.empty())
        (void)std::from_chars(mnt.data(), mnt.data() + mnt.size(), v.mnt_id);
    return v;
}

Expected<bool> same_file_description(pid_t pid1, int fd1, pid_t pid2, int fd2) {
    long r = syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
    if (r < 0)
        return fail_errno("kcmp(KCMP_FILE, pid {} fd {}, pid {} fd {})", pid1, fd1, pid2, fd2);
    return r == 0;
}

}  // namespace criu
