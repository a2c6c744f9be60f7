// The table of fd kinds. Each kind has its dump half and its restore half side by side, in one
// file (kind_reg.cc, kind_pipe.cc, kind_chr.cc, kind_eventfd.cc, kind_epoll.cc, kind_signalfd.cc,
// kind_timerfd.cc, kind_inotify.cc, kind_memfd.cc); adding a kind (eventfd, unix socket, ...) is
// that file, one schema message in images/proto/files.proto, one line in the table in
// fd_kind_table.cc and one test. Kinds not supported yet are table lines with a refusal only.
#pragma once

#include <fcntl.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/core/unique_fd.h"
#include "criu/files/fd_view.h"
#include "proto/files.pb.h"

namespace criu {

class SocketDumpState;

// (st_dev, st_ino): names a pipe, a FIFO or a deleted file across processes.
using InodeKey = std::pair<uint64_t, uint64_t>;

// What the dump halves share during one dump (owned by FilesDumper).
struct KindDumpContext {
    const Options& opts;
    Log& log;
    int images_dirfd;
    uint32_t file_id;  // id of the FileEntry being filled
    std::map<InodeKey, images::PipeData>& pipe_data;
    std::map<InodeKey, std::string>& ghosts;  // deleted file -> its ghost file name
    std::map<InodeKey, std::string>& memfds;  // memfd -> the file holding its content
    SocketDumpState& sockets;                 // sock_diag view, peers, TCP repair (sockets.h)
};

struct PipeObject {
    UniqueFd rd;  // for a FIFO: one O_RDWR open that keeps it (and its data) alive
    UniqueFd wr;
};

// What the restore halves share in one process (owned by FilesRestorer). Every fd kept here is
// placed at or above `high_fd`, above every fd number a target process uses.
struct KindRestoreContext {
    Log* log;  // the log of the current call (prepare_shared or restore_process_fds)
    int images_dirfd;
    int tty_fd;   // the restoring criu's terminal (--shell-job), -1 if it has none
    int high_fd;
    const std::map<InodeKey, images::PipeData>& pipe_data;
    // Pipe FileEntries that get the pipe's own end; any other description of the same end is
    // a reopen through /proc/self/fd (so a pipe has exactly one pipe2()).
    const std::set<uint32_t>& first_pipe_ends;
    std::map<InodeKey, PipeObject> pipes;
    std::map<std::string, UniqueFd> ghosts;  // ghost file name -> the recreated, unlinked inode
    std::map<InodeKey, UniqueFd> memfds;     // dumped (dev, ino) -> the recreated memfd
    std::map<uint32_t, UniqueFd> ptys;       // pty index -> the recreated master
    // Every entry of files.img, for kinds whose object spans several entries (a socket pair).
    const std::map<uint32_t, images::FileEntry>* files = nullptr;
    // Sockets created with their group (a pair, a listener and its queued clients) that are
    // not installed yet, by dump-time inode.
    std::map<uint64_t, UniqueFd> sockets;

    // Moves `fd` to the lowest free number >= high_fd (close-on-exec).
    Expected<UniqueFd> to_high(UniqueFd fd) const;
};

// The fds of one process that an entry names (an epoll's targets), by number.
struct FdRefs {
    pid_t pid = 0;
    std::vector<int> fds;
};

struct FdKindOps {
    const char* name;                    // "regular file": used in every message
    std::optional<images::FdKind> kind;  // the schema kind; none for kinds the schema lacks
    bool (*match)(const FdView&);
    // Set for refused kinds: the whole reason ("io_uring instances cannot be checkpointed").
    const char* refusal = nullptr;
    // Refusals that depend on the fd or options (a terminal without --shell-job); may be null.
    Status (*precheck)(const FdView&, const Options&) = nullptr;
    // Fills `out` (id and kind are already set).
    Status (*dump)(KindDumpContext&, const FdView&, images::FileEntry&) = nullptr;
    // Hostile-image checks of one entry; the caller adds file and record to the message.
    Status (*validate)(const images::FileEntry&) = nullptr;
    // Checks of files the entry keeps in the image directory (a ghost file, a memfd's content),
    // so that a missing one stops the restore before anything exists. May be null.
    Status (*validate_at)(int images_dirfd, const images::FileEntry&) = nullptr;
    // Key of the object that several entries of this kind may share ("pipe:dev:ino", a ghost
    // file name); entries with one key must be restored in one process or prepared in criu.
    std::string (*group)(const images::FileEntry&) = nullptr;
    // Creates an open file description equal to the dumped one: flags, offset, data.
    Expected<UniqueFd> (*open)(KindRestoreContext&, const images::FileEntry&) = nullptr;
    // Kinds whose state names other fds of one process (an epoll's targets). `refs` says which
    // (pid 0 and no fds: this entry names nothing);
    // FilesRestorer::load checks that this process restores the entry and has those fds, and
    // refuses reference cycles. `late_restore` then runs inside that process after all of its
    // fds are installed, with `fd` the entry's description; an entry that names another late
    // entry (an epoll watching an epoll) runs after it. Both null for other kinds.
    FdRefs (*refs)(const images::FileEntry&) = nullptr;
    Status (*late_restore)(KindRestoreContext&, const images::FileEntry&, int fd) = nullptr;
};

// The kind of a dumped fd; the table ends with a catch-all refusal, so there always is one.
const FdKindOps& classify_fd(const FdView& v);
// The restore half of a schema kind; nullptr if the kind is not restorable.
const FdKindOps* fd_kind_ops(images::FdKind kind);

// Shared by the kinds.
// The kernel's O_LARGEFILE, which fdinfo shows for every file on 64-bit (force_o_largefile());
// glibc defines O_LARGEFILE as 0 there.
inline constexpr uint32_t kKernelOLargefile = 0100000;
inline constexpr uint32_t kOpenFlagsAllowed =
    O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_DIRECT | kKernelOLargefile | O_DIRECTORY |
    O_NOFOLLOW | O_NOATIME | O_CLOEXEC | O_PATH | O_ASYNC | O_NOCTTY;
Status validate_open_flags(uint32_t flags);
Status validate_path(const std::string& path);
// Dumped flags -> flags for open(): nothing that creates or truncates, always O_CLOEXEC (the fd
// flag is put back by dup3 when the fd is installed).
int open_flags(uint32_t dumped);

// Anonymous-inode files (eventfd, epoll, signalfd, timerfd, inotify) are created with a fixed
// access mode; what the process can change afterwards is what F_SETFL changes.
inline constexpr uint32_t kAnonFlagsAllowed = O_ACCMODE | O_NONBLOCK | O_ASYNC | kKernelOLargefile;
Status validate_anon_flags(uint32_t flags, uint32_t access_mode);
// Dumped flags minus O_CLOEXEC (the fd flag lives in FdEntry).
inline uint32_t description_flags(const FdView& v) { return v.flags & ~uint32_t(O_CLOEXEC); }
// Puts back O_NONBLOCK and O_ASYNC of a freshly created anonymous-inode file.
Status set_status_flags(int fd, uint32_t flags);

// The memfd (the object, not a description) of a FD_MEMFD entry, created on first use and kept
// in `c.memfds`; the returned fd belongs to the context.
Expected<int> memfd_object(KindRestoreContext& c, const images::FileEntry& e);

extern const FdKindOps kRegFileKind;
extern const FdKindOps kPipeKind;
extern const FdKindOps kFifoKind;
extern const FdKindOps kCharDevKind;
extern const FdKindOps kTtyKind;
extern const FdKindOps kEventfdKind;
extern const FdKindOps kEpollKind;
extern const FdKindOps kSignalfdKind;
extern const FdKindOps kTimerfdKind;
extern const FdKindOps kInotifyKind;
extern const FdKindOps kMemfdKind;
extern const FdKindOps kPtyMasterKind;
extern const FdKindOps kPtySlaveKind;
extern const FdKindOps kNetlinkKind;
extern const FdKindOps kPidfdKind;
extern const FdKindOps kUnixKind;
extern const FdKindOps kInetKind;

}  // namespace criu
