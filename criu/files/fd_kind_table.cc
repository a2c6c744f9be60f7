#include "criu/files/fd_kind_table.h"

#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <climits>
#include <string_view>

namespace criu {
namespace {

bool link_is(const FdView& v, std::string_view s) { return v.link == s; }
bool link_starts(const FdView& v, std::string_view s) { return std::string_view(v.link).starts_with(s); }

// Devices that hold per-open state (an attached interface, a FUSE connection, a GPU context):
// a reopen by path would give a fresh, different object.
bool stateful_device(const FdView& v) {
    if (!S_ISCHR(v.st.st_mode))
        return false;
    unsigned ma = major(v.st.st_rdev), mi = minor(v.st.st_rdev);
    // Documentation/admin-guide/devices.txt: misc 10:200 tun, 10:229 fuse, 10:223 uinput,
    // 10:238 vhost-net, 10:241 vhost-vsock; 226 DRM; 116 ALSA; 81 video4linux.
    if (ma == 10 && (mi == 200 || mi == 229 || mi == 223 || mi == 238 || mi == 241))
        return true;
    return ma == 226 || ma == 116 || ma == 81 || link_starts(v, "/dev/vfio/");
}

// Refused kinds: a name, a match and the reason. Each becomes a real kind (one file, one
// schema message) by getting dump/validate/group/open halves.
constexpr FdKindOps refused(const char* name, std::optional<images::FdKind> kind, bool (*match)(const FdView&),
                            const char* why) {
    return FdKindOps{.name = name, .kind = kind, .match = match, .refusal = why};
}

// Order matters: the first match wins (a terminal is a char device, a memfd a regular file).
const FdKindOps kTable[] = {
    kUnixKind,
    kInetKind,
    kNetlinkKind,
    refused("socket", std::nullopt, [](const FdView& v) { return S_ISSOCK(v.st.st_mode); },
            "socket of an unsupported address family"),
    kEventfdKind,
    kEpollKind,
    kSignalfdKind,
    kTimerfdKind,
    kInotifyKind,
    // Kinds that cannot be checkpointed: their state lives in the kernel with no interface to
    // read it back (or recreating it would act on the world), so they are found before the freeze.
    refused("fanotify", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:[fanotify]"); },
            "fanotify instance (its marks cannot be listed back from the kernel: not supported)"),
    kPidfdKind,
    refused("io_uring", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:[io_uring]"); },
            "io_uring instances cannot be checkpointed"),
    refused("bpf map", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:bpf-map"); },
            "BPF maps cannot be checkpointed"),
    refused("bpf program", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:bpf-prog"); },
            "BPF programs cannot be checkpointed"),
    refused("bpf", std::nullopt, [](const FdView& v) { return link_starts(v, "anon_inode:bpf"); },
            "BPF links, iterators and tokens cannot be checkpointed"),
    refused("userfaultfd", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:[userfaultfd]"); },
            "userfaultfd (registered ranges and pending faults cannot be checkpointed)"),
    refused("perf_event", std::nullopt, [](const FdView& v) { return link_is(v, "anon_inode:[perf_event]"); },
            "perf events cannot be checkpointed"),
    refused("kvm", std::nullopt, [](const FdView& v) { return link_starts(v, "anon_inode:kvm-"); },
            "KVM virtual machines and vcpus cannot be checkpointed"),
    refused("anon inode", std::nullopt, [](const FdView& v) { return link_starts(v, "anon_inode:"); },
            "this kind of anonymous-inode file is not supported"),
    kMemfdKind,  // before regular files: a memfd is a regular file named "/memfd:NAME (deleted)"
    // Namespace files (nsfs, regular inodes) read "net:[4026531840]"; they are not paths.
    refused("namespace", std::nullopt,
            [](const FdView& v) {
                return S_ISREG(v.st.st_mode) && !link_starts(v, "/") && v.link.find(":[") != std::string::npos;
            },
            "namespace file (not supported yet)"),
    refused("block device", std::nullopt, [](const FdView& v) { return S_ISBLK(v.st.st_mode); },
            "block device (not supported yet)"),
    // Character devices whose open file holds state a reopen by path cannot give back.
    refused("stateful device", std::nullopt, [](const FdView& v) { return stateful_device(v); },
            "device with per-open state that cannot be checkpointed (tun/tap, FUSE, vhost, uinput, VFIO, GPU, "
            "sound or video capture)"),
    // Unix98 ptys whose master is in the tree; a slave of any other master is the job's terminal.
    kPtySlaveKind,  // before the master: the restore half of FD_PTY is the one with late_restore
    kPtyMasterKind,
    // BSD masters (majors 128-135) answer TCGETS like a terminal.
    refused("pty master", std::nullopt,
            [](const FdView& v) {
                unsigned ma = major(v.st.st_rdev);
                return S_ISCHR(v.st.st_mode) && ma >= 128 && ma <= 135;
            },
            "BSD pty master (not supported)"),
    kTtyKind,
    kCharDevKind,
    kPipeKind,
    kFifoKind,
    kRegFileKind,
    refused("unknown", std::nullopt, [](const FdView&) { return true; }, "unknown kind of file (not supported)"),
};

}  // namespace

const FdKindOps& classify_fd(const FdView& v) {
    for (const auto& k : kTable)
        if (k.match(v))
            return k;
    return kTable[std::size(kTable) - 1];
}

const FdKindOps* fd_kind_ops(images::FdKind kind) {
    for (const auto& k : kTable)
        if (k.kind == kind && k.open)
            return &k;
    return nullptr;
}

Status validate_open_flags(uint32_t flags) {
    if (flags & ~kOpenFlagsAllowed)
        return failf(EINVAL, "open flags 0{:o} have unknown bits 0{:o}", flags, flags & ~kOpenFlagsAllowed);
    if ((flags & O_ACCMODE) == O_ACCMODE)
        return failf(EINVAL, "open flags 0{:o} have an invalid access mode", flags);
    return {};
}

Status validate_path(const std::string& path) {
    if (path.empty() || path[0] != '/')
        return failf(EINVAL, "path \"{}\" is not absolute", path);
    if (path.find('\0') != std::string::npos)
        return failf(EINVAL, "path \"{}\" contains a NUL byte", path.substr(0, path.find('\0')));
    if (path.size() >= PATH_MAX)
        return failf(ENAMETOOLONG, "path of {} bytes is longer than PATH_MAX", path.size());
    return {};
}

Status validate_anon_flags(uint32_t flags, uint32_t access_mode) {
    if (flags & ~kAnonFlagsAllowed)
        return failf(EINVAL, "open flags 0{:o} have bits 0{:o} this kind of file cannot have", flags,
                     flags & ~kAnonFlagsAllowed);
    if ((flags & O_ACCMODE) != access_mode)
        return failf(EINVAL, "open flags 0{:o} have access mode {}, this kind of file is always created with {}",
                     flags, flags & O_ACCMODE, access_mode);
    return {};
}

Status set_status_flags(int fd, uint32_t flags) {
    int want = static_cast<int>(flags & (O_NONBLOCK | O_ASYNC));
    int cur = fcntl(fd, F_GETFL);
    if (cur < 0)
        return fail_errno("F_GETFL");
    if ((cur & (O_NONBLOCK | O_ASYNC)) != want && fcntl(fd, F_SETFL, (cur & ~(O_NONBLOCK | O_ASYNC)) | want) != 0)
        return fail_errno("F_SETFL 0{:o}", want);
    return {};
}

int open_flags(uint32_t dumped) {
    return static_cast<int>((dumped & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC)) | O_CLOEXEC);
}

Expected<UniqueFd> KindRestoreContext::to_high(UniqueFd fd) const {
    if (fd.get() >= high_fd)
        return fd;
    int n = fcntl(fd.get(), F_DUPFD_CLOEXEC, high_fd);
    if (n < 0)
        return fail_errno("F_DUPFD_CLOEXEC above fd {}", high_fd);
    return UniqueFd(n);
}

}  // namespace criu
