// pidfds of the process itself or of one of its children: fdinfo "Pid:" names the process (in
// the dumper's pid namespace, which is the dump's: restore recreates the same pids). Restore
// opens a new pidfd with pidfd_open() once that pid exists again: the process itself is, and a
// restored process has forked its children before its fds are installed (fd_kinds.h).
// A pidfd of any other process is refused: after a restore the pid may name someone else.
// A pidfd of a reaped process (Pid: -1) is refused as well (nothing can recreate it).
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace criu {
namespace {

bool is_child(pid_t parent, pid_t pid) {
    std::string path = fmt::format("/proc/{}/stat", pid);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return false;
    char buf[1024];
    ssize_t n = read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0)
        return false;
    std::string_view s(buf, size_t(n));
    size_t rp = s.rfind(')');
    if (rp == std::string_view::npos || rp + 4 >= s.size())
        return false;
    // ") S ppid ..."
    std::string_view rest = s.substr(rp + 4);
    auto ppid = parse_number<pid_t>(rest.substr(0, rest.find(' ')));
    return ppid && *ppid == parent;
}

Expected<pid_t> target_of(const FdView& v) {
    auto pid = parse_number<pid_t>(fdinfo_field(v.fdinfo, "Pid"));
    if (!pid)
        return failf(EINVAL, "{}: cannot parse \"Pid\" in the pidfd's fdinfo", v.where());
    return *pid;
}

Status precheck_pidfd(const FdView& v, const Options&) {
    pid_t pid = TRY(target_of(v));
    if (pid <= 0)
        return failf(ENOTSUP, "{}: pidfd of a process that was already reaped cannot be recreated", v.where());
    if (v.flags & PIDFD_THREAD)
        return failf(ENOTSUP, "{}: pidfd of a thread (PIDFD_THREAD) is not supported", v.where());
    if (pid != v.pid && !is_child(v.pid, pid))
        return failf(ENOTSUP,
                     "{}: pidfd of pid {}, which is neither the process itself nor its child; after a restore that "
                     "pid could name another process",
                     v.where(), pid);
    return {};
}

Status dump_pidfd(KindDumpContext&, const FdView& v, images::FileEntry& out) {
    TRY_VOID(precheck_pidfd(v, Options{}));
    auto* p = out.mutable_pidfd();
    p->set_flags(description_flags(v));
    p->set_pid(TRY(target_of(v)));
    return {};
}

Status validate_pidfd(const images::FileEntry& e) {
    if (!e.has_pidfd())
        return fail(EINVAL, "pidfd entry without PidfdFile data");
    TRY_VOID_CTX(validate_anon_flags(e.pidfd().flags(), O_RDWR), "pidfd");
    if (e.pidfd().pid() <= 0)
        return failf(EINVAL, "pidfd of pid {}", e.pidfd().pid());
    return {};
}

Expected<UniqueFd> open_pidfd_entry(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& p = e.pidfd();
    // PIDFD_NONBLOCK is O_NONBLOCK.
    UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, p.pid(), p.flags() & O_NONBLOCK)));
    if (!fd)
        return fail_errno("pidfd_open of pid {}", p.pid());
    if (fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0)
        return fail_errno("pidfd of pid {}: FD_CLOEXEC", p.pid());
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kPidfdKind{
    .name = "pidfd",
    .kind = images::FD_PIDFD,
    .match = [](const FdView& v) { return v.link == "anon_inode:[pidfd]"; },
    .precheck = precheck_pidfd,
    .dump = dump_pidfd,
    .validate = validate_pidfd,
    .open = open_pidfd_entry,
};

}  // namespace criu
