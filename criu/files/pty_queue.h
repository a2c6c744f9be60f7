// The bytes a pty's slave wrote that its master has not read yet: copied at dump without
// losing them, even if criu dies half-way; put back at restore.
//
// A tty has no peek (no MSG_PEEK, no tee): the only way to learn the bytes is to read them,
// which takes them out of the queue the dumped process reads. They are put back with TIOCSTI on
// the master, which appends bytes to the master's read buffer as they are (the master's termios
// are fixed raw by the pty driver: no input processing), without opening a slave or touching
// the slave's termios. TIOCSTI needs CAP_SYS_ADMIN for a tty that is not the caller's own
// (drivers/tty/tty_io.c tiocsti); whether it is allowed is probed without side effects before
// anything is read (a NULL argument gives EFAULT after the permission checks).
//
// Why a guardian process: between the read and the last TIOCSTI the bytes live only in memory.
// If that memory were criu's, a SIGKILL of criu there (Ctrl-C twice, a timeout, the OOM killer)
// would lose them and the process would run on without them. So the read and the put-back run
// in a child of criu made with clone(CLONE_VM|CLONE_VFORK) (like posix_spawn: no copy of
// criu's memory), in a session of its own and with every signal blocked: SIGKILL of criu, of
// its process group or of its session does not reach it, and it finishes the put-back (tens of
// microseconds) whatever happens to criu. Only a SIGKILL aimed at the guardian itself in that
// window, or a kill of its whole cgroup, can still lose bytes.
//
// The one interleaving left when criu dies while the guardian holds the bytes: the kernel
// resumes the tree, and a write of the tree to the slave in those microseconds lands before the
// bytes are back. While criu lives the tree is stopped and nothing can come in between.
//
// At most kPtyMasterQueueMax bytes: the master's read buffer (N_TTY_BUF_SIZE - 1) is all TIOCSTI
// can fill. When it is full, more may wait in the pty's buffer behind it (~13.8 KiB in all on
// 6.18); such a queue is not copied (the caller leaves it alone and says so).
#pragma once

#include <string>
#include <string_view>

#include "criu/core/error.h"

namespace criu {

inline constexpr size_t kPtyMasterQueueMax = 4095;

struct PtyQueueOptions {
    // Test hook (CRIU_FAULT_INJECT=pty-guardian-orphaned): once the guardian has read the bytes,
    // it SIGKILLs its parent and puts them back only after it was re-parented, i.e. exactly the
    // case of criu dying while the guardian holds the bytes.
    bool kill_parent_after_read = false;
};

// Copies the bytes waiting on `master` (a pty master; a pidfd_getfd duplicate shares the open
// file description of the dumped process) and leaves them queued as they were. Fails without
// touching the queue when it holds kPtyMasterQueueMax bytes or more, or when TIOCSTI is not
// allowed.
Expected<std::string> copy_pty_master_queue(int master, const PtyQueueOptions& opts = {});

// Appends `data` (at most kPtyMasterQueueMax bytes) to what `master` reads (restore).
Status put_pty_master_queue(int master, std::string_view data);

}  // namespace criu
