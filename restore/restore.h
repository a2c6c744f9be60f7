// criu restore: recreate a dumped process from an image directory.
//
// Phase 1 (criu): read and validate every image (pstree, core, mm, pagemap chain, fs, files),
//   plan where every page comes from, open the files behind the VMAs, lay out the blob area.
// Phase 2 (restored child, libc): clone3 with the dumped PID, session/group, fds, cwd/root,
//   umask, rlimits, personality; map the blob and jump.
// Phase 3 (blob, restore/blob/): swap the address space, vDSO, pages, mm, signals, timers,
//   threads with their TIDs, per-thread state, seccomp; rt_sigreturn everywhere.
// Phase 4 (criu): ptrace the threads out of rt_sigreturn, unmap the blob area, write the
//   pidfile, then detach (-d) or wait and pass the process's status on.
// A failure at any step kills what was created and names the step, the pid/tid and the cause.
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/core/unique_fd.h"

namespace criu {

// Returns the exit code for criu: 0 with -d (the process runs on, reparented when criu
// exits); otherwise the restored process's own exit status, or 128+N if signal N killed it.
Expected<int> run_restore(const Options& opts, Log& log);

// Live migration's destination: `before_release` runs once the process is fully restored
// and still held (every thread stopped before its rt_sigreturn), with its pid. An error
// there kills the process and fails the restore, leaving nothing behind; success lets it run.
//
// `on_lazy` (with opts.lazy_pages): post-copy without the lazy-pages daemon. Each process's
// userfaultfd and its lazy ranges (left empty, registered MISSING) are handed here, while
// the process is still held; no daemon socket is looked for. The callee owns the uffd from
// then on and must fill every lazy page (or kill the process) before letting it go.
struct RestoreHooks {
    std::function<Status(pid_t)> before_release;
    std::function<Status(pid_t pid, UniqueFd uffd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges)> on_lazy;
};
Expected<int> run_restore(const Options& opts, Log& log, const RestoreHooks& hooks);

}  // namespace criu
