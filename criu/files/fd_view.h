// What the dumper learns about one fd of another process without running code in it:
// /proc/PID/fd/N (the link), /proc/PID/fdinfo/N (pos, flags, mnt_id) and a copy of the fd taken
// with pidfd_getfd(), which shares the open file description (KERNEL-NOTES section 2).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
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
    // Shares the target's open file description (offset, queue): never read(), lseek() or
    // recv() it; pread, tee and MSG_PEEK only (KERNEL-NOTES pitfall 12).
    UniqueFd stolen;

    // "pid 4211 fd 7", the prefix of every message about this fd.
    std::string where() const;
    // The link without the " (deleted)" the kernel appends to unlinked paths.
    std::string path() const;
};

Expected<UniqueFd> open_pidfd(pid_t pid);
// Fd numbers of `pid`, ascending.
Expected<std::vector<int>> list_target_fds(pid_t pid);
// Gathers an FdView. An fd closed meanwhile (the process may be running) fails with EBADF.
Expected<FdView> inspect_target_fd(int pidfd, pid_t pid, int fd);

// kcmp(KCMP_FILE): true when fd1 of pid1 and fd2 of pid2 are one open file description.
Expected<bool> same_file_description(pid_t pid1, int fd1, pid_t pid2, int fd2);

}  // namespace criu
