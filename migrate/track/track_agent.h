// The tracking agent: a small detached process that holds a uffd-wp tracker's userfaultfd
// between criu invocations (pre-dump, pre-dump, ..., dump). The uffd is the tracking: when its
// last fd closes, the kernel unregisters every VMA and every page reads as written again
// (KERNEL-NOTES pitfall 1), so it has to outlive the pre-dump that armed it.
//
// Life cycle:
//   - spawn_track_agent() forks the agent off the dumper (after the pre-dump's pages are read,
//     before the process is resumed) and hands it the tracker. It runs in its own session,
//     named "criu-track-agent", and never stops or touches the process: it only reads pagemap
//     and issues uffd ioctls.
//   - It listens on the unix socket agent_socket_path(pid) (/run/criu/track/<pid>.sock, root only).
//   - It ends when the process exits (pidfd), when asked (STOP), when a collect fails, or after
//     `idle_timeout_s` without a request. Its exit closes the uffd: the process is left untracked,
//     exactly as before the first pre-dump.
//
// Consistency: the agent numbers its rounds. Generation 1 is the baseline it was given; each
// COLLECT makes a new generation and answers with everything written since the generation the
// requester names (the one its parent image set recorded). It keeps the last kHistory rounds,
// so a dump that failed half-way can simply be run again against the same parent. A request
// naming another session, a generation it no longer has, or a process with another start time
// (pid reuse) is refused; the dumper then falls back to a full copy and says so.
//
// Wire format (SOCK_STREAM, native endian, one request per connection):
//   request: u32 magic "CRTA" | u32 op (1 collect, 2 stop, 3 ping) | u64 session | u64 since |
//            u64 start_time
//   reply:   u32 magic | i32 status (0 or an errno) | u64 session | u64 generation |
//            u64 length | length bytes (collect: DirtySet::encode(); error: the message)
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "migrate/track/dirty_set.h"
#include "migrate/track/uffd_tracker.h"

namespace criu {

inline constexpr const char* kTrackAgentDir = "/run/criu/track";

std::string agent_socket_path(pid_t pid, const std::string& dir = kTrackAgentDir);

struct AgentConfig {
    std::string dir = kTrackAgentDir;   // where the socket goes
    unsigned idle_timeout_s = 3600;     // ends after this long without a request
    std::string log_path;               // the agent's own log; empty: none
};

struct AgentState {
    uint64_t session = 0;     // random, new for every agent
    uint64_t generation = 0;  // the round the answer brings the requester to
};

// Starts an agent for `tracker` (which is moved into it; this process keeps nothing). Returns
// once the agent listens, with its session and the baseline generation (1).
Expected<AgentState> spawn_track_agent(std::unique_ptr<UffdWpTracker> tracker, const AgentConfig& cfg, Log& log);

struct AgentCollect {
    AgentState state;
    DirtySet dirty;  // written since generation `since` of `session`
};

// Asks the agent of `pid` for everything written since `since`. `start_time` is what the
// requester sees for the pid now. Fails with ENOENT/ECONNREFUSED when no agent runs,
// ESTALE for another session or a generation it no longer has, ESRCH for another process.
Expected<AgentCollect> agent_collect(pid_t pid, uint64_t session, uint64_t since, uint64_t start_time,
                                     const std::string& dir = kTrackAgentDir);
// The agent's session and current generation.
Expected<AgentState> agent_ping(pid_t pid, const std::string& dir = kTrackAgentDir);
// Asks the agent of `pid` to close its uffd and exit; returns once the uffd is closed. Success
// also when no agent runs.
Status agent_stop(pid_t pid, const std::string& dir = kTrackAgentDir);

}  // namespace criu
