// Helpers every probe file shares: results with the kernel's reason, children that
// are always killed and reaped, running a risky probe in a forked child, and small
// /proc file accessors.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "kernel-feature-check/probe.h"

namespace criu::kfc {

ProbeResult yes(std::string detail);
ProbeResult no(std::string detail);
// "what: Operation not permitted (EPERM)", from errno at the call.
ProbeResult no_errno(std::string_view what);
std::string errno_text(int err);
std::string hex(uint64_t v);

// A child process owned by a probe. The destructor SIGKILLs and reaps it, so an
// early return from a probe never leaves a zombie or a stopped tracee behind.
class ScopedChild {
public:
    // Forks; the child runs body(ready_fd) and _exits with its return value, never
    // returning into the caller. ready_fd is the write end of a pipe the parent
    // waits on in wait_ready().
    static Expected<ScopedChild> spawn(const std::function<int(int ready_fd)>& body);

    ScopedChild(ScopedChild&& o) noexcept;
    ScopedChild& operator=(ScopedChild&&) = delete;
    ScopedChild(const ScopedChild&) = delete;
    ~ScopedChild();

    pid_t pid() const { return pid_; }
    // Read end of the child's ready pipe (run_isolated streams the result on it).
    int ready_fd() const { return ready_.get(); }
    // Waits for the child to write one byte to ready_fd.
    Status wait_ready(int timeout_ms);
    // waitpid(pid, options|WNOHANG) polled until a state change or the timeout.
    // Marks the child reaped when the status says it is gone.
    Expected<int> wait(int options, int timeout_ms);
    void kill_and_reap();

private:
    ScopedChild(pid_t pid, UniqueFd ready) : pid_(pid), ready_(std::move(ready)) {}
    pid_t pid_ = -1;
    bool reaped_ = false;
    UniqueFd ready_;
};

// An mmap'ed range unmapped on destruction.
class ScopedMapping {
public:
    // mmap(NULL, len, prot, flags, fd, 0).
    static Expected<ScopedMapping> map(size_t len, int prot, int flags, int fd = -1);
    ScopedMapping(ScopedMapping&& o) noexcept;
    ScopedMapping& operator=(ScopedMapping&&) = delete;
    ScopedMapping(const ScopedMapping&) = delete;
    ~ScopedMapping();

    uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
    uint64_t addr() const { return reinterpret_cast<uintptr_t>(addr_); }
    size_t size() const { return len_; }

private:
    ScopedMapping(void* addr, size_t len) : addr_(addr), len_(len) {}
    void* addr_ = nullptr;
    size_t len_ = 0;
};

size_t page_size();

// Inside a ScopedChild body: tell the parent we are set up.
void child_ready(int ready_fd);
// Inside a ScopedChild body: sleep until killed.
[[noreturn]] void child_park();

// How long a probe waits for its child. A working kernel answers in milliseconds; the limit
// only turns a hang into "absent". It is generous because a busy machine (a build next door,
// a dump in progress) can leave a freshly forked child unscheduled for a second or more, and a
// feature wrongly reported absent refuses dumps that would work.
inline constexpr int kProbeTimeoutMs = 10000;

// Runs fn in a forked child and brings its result back through a pipe. Used for
// probes that change process-wide state (clear_refs, prctl) or that could fault or
// block forever if the kernel half-supports a feature (uffd write-protect). A crash
// or a timeout becomes an absent result that says so.
ProbeResult run_isolated(const std::function<ProbeResult()>& fn, int timeout_ms = kProbeTimeoutMs);

// PTRACE_SEIZE + PTRACE_INTERRUPT, then wait for the group-stop that reports
// PTRACE_EVENT_STOP. On success the child is a stopped tracee of this process.
Status seize_and_stop(ScopedChild& child, int timeout_ms);

Expected<std::string> read_text(const std::string& path);
Status write_text(const std::string& path, std::string_view data);

}  // namespace criu::kfc
