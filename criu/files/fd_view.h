// What the dumper learns about one fd of another process without running code in it:
// /proc/PID/fd/N (the link), /proc/PID/fdinfo/N (pos, flags, mnt_id) and a copy of the fd taken
// with pidfd_getfd(), which shares the open file description (KERNEL-NOTES section 2).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

struct FdView {
    pid_t pid = 0;
    int fd = -1;
    std::string link;     // "pipe:[123]", "/tmp/x (deleted)", "anon_inode:[eventfd]"
    struct stat st {};    // fstat of `stolen`
    uint64_t pos = 0;     // fdinfo "pos"
    uint32_t flags = 0;   // fdinfo "flags": f_flags, plus O_CLOEXEC when the fd has FD_CLOEXEC
    int mnt_id = -1;
    std::string fdinfo;   // the whole fdinfo text, for kinds that need more of it
    // fdinfo longer than kMaxFdinfoSize (an epoll or inotify with a huge number of entries) is
    // cut there; kinds that list entries must refuse it rather than lose some.
    bool fdinfo_truncated = false;
    // Shares the target's open file description (offset, queue): never read(), lseek() or
    // recv() it; pread, tee and MSG_PEEK only (KERNEL-NOTES pitfall 12).
    UniqueFd stolen;

    // "pid 4211 fd 7", the prefix of every message about this fd.
    std::string where() const;
    // The link without the " (deleted)" the kernel appends to unlinked paths.
    std::string path() const;
};

inline constexpr size_t kMaxFdinfoSize = 16u << 20;

Expected<UniqueFd> open_pidfd(pid_t pid);
// /proc/PID/fdinfo/FD, read whole (up to kMaxFdinfoSize; `truncated` says if it was cut).
Expected<std::string> read_fdinfo(pid_t pid, int fd, bool* truncated = nullptr);
// The value of the line "key:\t..." of fdinfo text (leading blanks skipped), or an empty view.
std::string_view fdinfo_field(std::string_view text, std::string_view key);
// In one line of entries ("tfd: 9 events: 19 data: 7", "inotify wd:1 ino:3c5 mask:100"): the
// token after "key:" (blanks skipped), where "key" starts the line or follows a blank.
std::string_view fdinfo_token(std::string_view line, std::string_view key);

// A whole string_view as a number in `base`; nullopt if it is not exactly one.
template <class T>
std::optional<T> parse_number(std::string_view s, int base = 10) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
        return std::nullopt;
    return v;
}
// Fd numbers of `pid`, ascending.
Expected<std::vector<int>> list_target_fds(pid_t pid);
// Gathers an FdView. An fd closed meanwhile (the process may be running) fails with EBADF.
Expected<FdView> inspect_target_fd(int pidfd, pid_t pid, int fd);

// kcmp(KCMP_FILE): true when fd1 of pid1 and fd2 of pid2 are one open file description.
Expected<bool> same_file_description(pid_t pid1, int fd1, pid_t pid2, int fd2);

}  // namespace criu
