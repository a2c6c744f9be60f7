// File descriptors: the public face of the fd kinds table (criu/files/fd_kind_table.h).
//
// Dump half:    preflight_fds() (nothing stopped) and FilesDumper (tree frozen by the caller).
//               Target fds are duplicated into criu with pidfd_getfd(); no code runs in the target.
// Restore half: FilesRestorer, loaded and validated from the image directory before anything is
//               created, then restore_process_fds() inside each restored process.
//
// Image files: files.img (one FileEntry per open file description, shared descriptions once),
// fdinfo-<pid>.img (one FdEntry per fd), pipes-data.img (unread pipe/FIFO data), and one raw
// ghost file per deleted regular file (its name is in RegFile.ghost_file).
#pragma once

#include <sys/types.h>

#include <memory>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"

namespace criu {

// Walks /proc/PID/fd and fdinfo WITHOUT stopping the process and returns one error that lists
// every fd that cannot be dumped ("pid 4211 fd 7: io_uring instances cannot be checkpointed;
// pid 4211 fd 5: unix socket (not supported yet)"). Also used by `criu dump --dry-run`.
Status preflight_fds(pid_t pid, const Options& opts, Log& log);

class FilesDumperState;

// One per dump. Collects FileEntry records across all processes of the tree and dedupes open
// file descriptions with kcmp(KCMP_FILE): two fds (in one or several processes) sharing one
// description get one FileEntry, hence one offset and one set of flags.
class FilesDumper {
public:
    FilesDumper();
    ~FilesDumper();
    FilesDumper(FilesDumper&&) noexcept;
    FilesDumper& operator=(FilesDumper&&) noexcept;

    // Writes fdinfo-<pid>.img (and ghost files of deleted files) into `images_dirfd`.
    // The process must be stopped (frozen or seized) by the caller.
    Status dump_process_fds(pid_t pid, const Options& opts, Log& log, int images_dirfd);
    // Writes files.img and pipes-data.img. Call once, after every process was dumped.
    Status finish(int images_dirfd);

private:
    std::unique_ptr<FilesDumperState> st_;
};

class FilesRestorerState;

// Restore half. Use:
//   1. In criu: auto fr = TRY(FilesRestorer::load(dirfd, pids, log));  reads and validates
//      files.img, pipes-data.img and fdinfo-<pid>.img of every pid; nothing is created yet.
//   2. In criu, before forking the tree: fr.prepare_shared(log). Creates every object used by
//      more than one process (pipes whose ends live in different processes, descriptions
//      inherited across fork, ghost files opened by several processes) and holds them at fd
//      numbers above every target fd, so that forked processes inherit them.
//      Not needed for a single-process tree.
//   3. In each restored process (a forked child of criu, libc usable), after it has forked its
//      own children and moved its service fds above max_target_fd(pid) with
//      fcntl(fd, F_DUPFD_CLOEXEC, max_target_fd(pid) + 1) (never dup2 onto a chosen number
//      there: fds held by this object live above max_target_fd() too):
//      fr.restore_process_fds(pid, opts, log). Installs every fd at its number with its
//      FD_CLOEXEC, offset and flags, closes every other fd <= max_target_fd(pid), and closes
//      every fd this FilesRestorer held (in this process) so none leaks into the target.
// cwd and root (FsInfo) are left to the restorer.
class FilesRestorer {
public:
    static Expected<FilesRestorer> load(int images_dirfd, const std::vector<pid_t>& pids, Log& log);

    FilesRestorer(FilesRestorer&&) noexcept;
    FilesRestorer& operator=(FilesRestorer&&) noexcept;
    ~FilesRestorer();

    // Highest fd number the process `pid` had (-1 if it had none). Fds of the restoring code
    // must live above it while restore_process_fds(pid) runs.
    int max_target_fd(pid_t pid) const;
    // Highest fd number over all processes; fds held by this object live above it.
    int max_target_fd() const;

    Status prepare_shared(Log& log);
    Status restore_process_fds(pid_t pid, const Options& opts, Log& log);

private:
    explicit FilesRestorer(std::unique_ptr<FilesRestorerState> st);
    std::unique_ptr<FilesRestorerState> st_;
};

}  // namespace criu
