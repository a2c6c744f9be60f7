// File descriptors: the public face of the fd kinds table (criu/files/fd_kind_table.h).
//
// Dump half:    preflight_fds() (nothing stopped) and FilesDumper (tree frozen by the caller).
//               Target fds are duplicated into criu with pidfd_getfd(); no code runs in the target.
// Restore half: FilesRestorer, loaded and validated from the image directory before anything is
//               created, then restore_process_fds() inside each restored process.
//
// Image files: files.img (one FileEntry per open file description, shared descriptions once),
// fdinfo-<pid>.img (one FdEntry per fd), pipes-data.img (unread pipe/FIFO data), one raw
// ghost file per deleted regular file (its name is in RegFile.ghost_file) and one sparse raw
// file per memfd with its content (MemfdFile.content_file).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/core/unique_fd.h"

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
    // --tcp-established: the nft table of the network lock that holds the dumped connections
    // ("" if there were none), for the inventory.
    std::string tcp_lock_table() const;
    // Once the image set is complete: `killed` (the tree is gone) keeps the connections blocked
    // for restore; otherwise (--leave-running) they are given back to the processes, which
    // must not run before this. Without this call, destroying the FilesDumper gives them back
    // too (a failed dump).
    Status release_tcp(bool killed, Log& log);

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
//      Entries that name other fds of the process (an epoll's targets) are completed last,
//      once every fd of the process is installed.
// cwd and root (FsInfo) are left to the restorer.
//
// Memfds both mapped and open: the memory restorer must map the same object the fds get, or
// the process would see two memfds. memfd_for(dev, ino) gives it (see there).
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

    // The memfd that fds of the dump refer to whose (st_dev, st_ino) at dump time were
    // (dev, ino): the identity a VMA of that memfd has in mm.img (dev as makedev() of the
    // major:minor of /proc/PID/maps, ino = its inode). Returns a new fd (close-on-exec, above
    // max_target_fd()) on the ONE object every fd of the dump on that memfd gets: created on the
    // first call (or by prepare_shared) with its name, size, content, mode and seals already in
    // place, so a mapping of it needs no page filling, must not resize it, and cannot be
    // writable-shared if F_SEAL_WRITE is among its seals (nor could the dumped one). An empty
    // UniqueFd if no fd of the dump refers to that memfd (it was only mapped): the caller makes
    // its own then. Call it in criu before forking the process that holds the fds (the object
    // is inherited), or in that process before restore_process_fds(); the caller owns the fd.
    Expected<UniqueFd> memfd_for(uint64_t dev, uint64_t ino, Log& log);

    Status prepare_shared(Log& log);
    Status restore_process_fds(pid_t pid, const Options& opts, Log& log);

private:
    explicit FilesRestorer(std::unique_ptr<FilesRestorerState> st);
    std::unique_ptr<FilesRestorerState> st_;
};

}  // namespace criu
