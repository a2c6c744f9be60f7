// Unix98 ptys whose master is held by the dumped tree: the master (/dev/ptmx) and its slaves
// (/dev/pts/N). A slave whose master is outside the tree is the job's own terminal and stays
// with kind_chr.cc (--shell-job).
//
// Dump: the index comes from TIOCGPTN, the slave's termios and window size from TCGETS and
// TIOCGWINSZ (on a master they act on the slave, drivers/tty/tty_io.c tty_pair_get_tty), the
// lock and packet mode from TIOCGPTLCK/TIOCGPKT, the controlling session and foreground group
// from TIOCGSID/TIOCGPGRP on the master (a slave answers those only to its own session).
// Restore (KERNEL-NOTES section 6): open /dev/ptmx until TIOCGPTN gives the dumped index (the
// kernel hands out the lowest free one), unlock, set termios and window size, open the slave
// with TIOCGPTPEER. The session leader then takes it back as controlling terminal (TIOCSCTTY,
// TIOCSPGRP) once all of its fds are installed.
// Bytes the slave wrote that the master has not read are kept (pty_queue.h: copied by a guardian
// process that puts them straight back with TIOCSTI, so that not even criu's SIGKILL loses them;
// put back the same way at restore), except in packet mode (each read of the master returns a
// status byte first, and a pending status is consumed by that read: reading is not undoable)
// and when the master's read buffer is full; the dump then warns how many bytes are not kept.
// Not kept, the other way: bytes the master wrote that the slave has not read. They sit in the
// slave's line discipline after its input processing; in canonical mode (the default) an
// unfinished line cannot be read at all, and the only way to read it, turning ICANON off,
// merges the queue into one line when ICANON comes back on (n_tty_set_termios), so the process
// would see different reads. The dump warns how many there were.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/pty_queue.h"

namespace criu {
namespace {

// Unix98 slaves: majors 136-143 (Documentation/admin-guide/devices.txt); index = the minor
// spread over those majors.
constexpr unsigned kPtsMajorFirst = 136, kPtsMajorLast = 143;
// The kernel's default and maximum kernel.pty.max is 4096; the upper bound of any index.
constexpr uint32_t kMaxPtyIndex = 1u << 20;

bool is_ptmx(const FdView& v) {
    return S_ISCHR(v.st.st_mode) && major(v.st.st_rdev) == 5 && minor(v.st.st_rdev) == 2;
}

bool is_pts(const FdView& v) {
    unsigned ma = major(v.st.st_rdev);
    return S_ISCHR(v.st.st_mode) && ma >= kPtsMajorFirst && ma <= kPtsMajorLast;
}

uint32_t pts_index(const struct stat& st) {
    return (major(st.st_rdev) - kPtsMajorFirst) * 256 + minor(st.st_rdev);
}

// Child pids of every thread of `pid` (/proc/PID/task/TID/children, 3.5+ with
// CONFIG_PROC_CHILDREN, which every dump needs anyway).
std::vector<pid_t> children_of(pid_t pid) {
    std::vector<pid_t> out;
    std::string dir = fmt::format("/proc/{}/task", pid);
    DIR* d = opendir(dir.c_str());
    if (!d)
        return out;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        std::string text;
        if (FILE* f = fopen(fmt::format("{}/{}/children", dir, e->d_name).c_str(), "re")) {
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                text.append(buf, n);
            fclose(f);
        }
        size_t at = 0;
        while (at < text.size()) {
            size_t end = text.find(' ', at);
            if (end == std::string::npos)
                end = text.size();
            if (auto p = parse_number<pid_t>(std::string_view(text).substr(at, end - at)))
                out.push_back(*p);
            at = end + 1;
        }
    }
    closedir(d);
    return out;
}

struct MasterAt {
    pid_t pid;
    int fd;
};

// The fd of the dumped tree (`root` and every process below it) that is the master of pty
// `index`. Only masters inside the tree make a slave part of the dump; the master of the
// user's own terminal lives in sshd, tmux or a terminal emulator above the tree.
std::optional<MasterAt> find_master(pid_t root, uint32_t index) {
    std::vector<pid_t> todo{root};
    for (size_t i = 0; i < todo.size() && i < 100000; ++i) {
        pid_t pid = todo[i];
        auto fds = list_target_fds(pid);
        if (fds) {
            for (int fd : *fds) {
                char buf[64];
                ssize_t n = readlink(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), buf, sizeof buf);
                std::string_view link(buf, n > 0 ? size_t(n) : 0);
                if (link != "/dev/ptmx" && link != "/dev/pts/ptmx")
                    continue;
                auto info = read_fdinfo(pid, fd);
                if (info && parse_number<uint32_t>(fdinfo_field(*info, "tty-index")) == index)
                    return MasterAt{pid, fd};
            }
        }
        for (pid_t c : children_of(pid))
            todo.push_back(c);
    }
    return std::nullopt;
}

pid_t tree_root(const FdView& v, const Options& opts) { return opts.pid > 0 ? opts.pid : v.pid; }

Status dump_termios(int fd, const std::string& where, images::TtyTermios& t) {
    struct termios tio {};
    if (tcgetattr(fd, &tio) != 0)
        return fail_errno("{}: TCGETS", where);
    struct winsize ws {};
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0)
        return fail_errno("{}: TIOCGWINSZ", where);
    t.set_iflag(tio.c_iflag);
    t.set_oflag(tio.c_oflag);
    t.set_cflag(tio.c_cflag);
    t.set_lflag(tio.c_lflag);
    t.set_line(tio.c_line);
    t.set_cc(std::string(reinterpret_cast<const char*>(tio.c_cc), NCCS));
    t.set_ispeed(cfgetispeed(&tio));
    t.set_ospeed(cfgetospeed(&tio));
    t.set_ws_row(ws.ws_row);
    t.set_ws_col(ws.ws_col);
    t.set_ws_xpixel(ws.ws_xpixel);
    t.set_ws_ypixel(ws.ws_ypixel);
    return {};
}

Status validate_termios(const images::TtyTermios& t) {
    if (t.cc().size() > NCCS)
        return failf(EINVAL, "termios has {} control characters, at most {}", t.cc().size(), NCCS);
    if (t.ws_row() > 0xffff || t.ws_col() > 0xffff || t.ws_xpixel() > 0xffff || t.ws_ypixel() > 0xffff)
        return failf(EINVAL, "window size {}x{} ({}x{} pixels) does not fit 16 bits", t.ws_col(), t.ws_row(),
                     t.ws_xpixel(), t.ws_ypixel());
    return {};
}

Status apply_termios(int fd, const images::TtyTermios& t) {
    struct termios tio {};
    if (tcgetattr(fd, &tio) != 0)
        return fail_errno("TCGETS");
    tio.c_iflag = t.iflag();
    tio.c_oflag = t.oflag();
    tio.c_cflag = t.cflag();
    tio.c_lflag = t.lflag();
    tio.c_line = static_cast<cc_t>(t.line());
    std::memcpy(tio.c_cc, t.cc().data(), t.cc().size());
    if (cfsetispeed(&tio, t.ispeed()) != 0 || cfsetospeed(&tio, t.ospeed()) != 0)
        return failf(EINVAL, "termios speeds {}/{} are not valid", t.ispeed(), t.ospeed());
    if (tcsetattr(fd, TCSANOW, &tio) != 0)
        return fail_errno("TCSETS");
    struct winsize ws {};
    ws.ws_row = static_cast<unsigned short>(t.ws_row());
    ws.ws_col = static_cast<unsigned short>(t.ws_col());
    ws.ws_xpixel = static_cast<unsigned short>(t.ws_xpixel());
    ws.ws_ypixel = static_cast<unsigned short>(t.ws_ypixel());
    if (ioctl(fd, TIOCSWINSZ, &ws) != 0)
        return fail_errno("TIOCSWINSZ");
    return {};
}

Status precheck_pts(const FdView& v, const Options& opts) {
    if (find_master(tree_root(v, opts), pts_index(v.st)))
        return {};
    // Not ours: the job's terminal, restored onto criu's with --shell-job.
    return kTtyKind.precheck(v, opts);
}

Status dump_master(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    int fd = v.stolen.get();
    unsigned int index = 0;
    if (ioctl(fd, TIOCGPTN, &index) != 0)
        return fail_errno("{}: TIOCGPTN", v.where());
    int locked = 0, packet = 0;
    if (ioctl(fd, TIOCGPTLCK, &locked) != 0)
        return fail_errno("{}: TIOCGPTLCK", v.where());
    if (ioctl(fd, TIOCGPKT, &packet) != 0)
        return fail_errno("{}: TIOCGPKT", v.where());
    auto* p = out.mutable_pty();
    p->set_index(index);
    p->set_master(true);
    p->set_flags(description_flags(v));
    p->set_path(v.path());
    p->set_locked(locked != 0);
    p->set_packet_mode(packet != 0);
    TRY_VOID(dump_termios(fd, v.where(), *p->mutable_termios()));
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) != 0)
        return fail_errno("{}: FIONREAD", v.where());
    if (queued == 0)
        return {};
    if (packet) {
        c.log.warn("files", "{}: {} bytes written by the slave of pty {} and not read yet are not kept (packet mode)",
                   v.where(), queued, index);
        return {};
    }
    // The test hook of pty_queue.h; read here, as DumpContext reads it for the dump's phases.
    const char* fault = std::getenv("CRIU_FAULT_INJECT");
    PtyQueueOptions qo{.kill_parent_after_read = fault && std::string_view(fault) == "pty-guardian-orphaned"};
    auto copied = copy_pty_master_queue(fd, qo);
    if (!copied && copied.error().err() == ENOSPC) {
        c.log.warn("files", "{}: pty {}: {}; the bytes are left in place and not kept", v.where(), index,
                   copied.error().message());
        return {};
    }
    p->set_output(TRY_CTX(std::move(copied), "{}: bytes the master of pty {} had not read", v.where(), index));
    c.log.info("files", "{}: kept {} bytes the master of pty {} had not read", v.where(), p->output().size(), index);
    return {};
}

Status dump_pts(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    uint32_t index = pts_index(v.st);
    auto m = find_master(tree_root(v, c.opts), index);
    if (!m) {
        // The job's own terminal: a terminal entry, as without ptys.
        out.set_kind(images::FD_TTY);
        return kTtyKind.dump(c, v, out);
    }
    auto* p = out.mutable_pty();
    p->set_index(index);
    p->set_flags(description_flags(v));
    p->set_path(v.path());
    TRY_VOID(dump_termios(v.stolen.get(), v.where(), *p->mutable_termios()));
    // The session and foreground group are visible on the master only.
    UniqueFd pidfd = TRY(open_pidfd(m->pid));
    UniqueFd master(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), m->fd, 0)));
    if (!master)
        return fail_errno("{}: pidfd_getfd of the master of pty {} (pid {} fd {})", v.where(), index, m->pid, m->fd);
    pid_t sid = 0, pgrp = 0;
    if (ioctl(master.get(), TIOCGSID, &sid) == 0 && sid == v.pid && ioctl(master.get(), TIOCGPGRP, &pgrp) == 0) {
        p->set_ctty_sid(sid);
        p->set_fg_pgrp(pgrp);
    }
    int queued = 0;
    if (ioctl(v.stolen.get(), FIONREAD, &queued) == 0 && queued > 0)
        c.log.warn("files", "{}: {} bytes written to the master of pty {} and not read yet are not kept (see "
                            "kind_pty.cc)", v.where(), queued, index);
    return {};
}

Status validate_pty(const images::FileEntry& e) {
    if (!e.has_pty())
        return fail(EINVAL, "pty entry without PtyFile data");
    const auto& p = e.pty();
    if (p.index() >= kMaxPtyIndex)
        return failf(EINVAL, "pty index {} is above {}", p.index(), kMaxPtyIndex);
    TRY_VOID_CTX(validate_open_flags(p.flags()), "pty {}", p.index());
    std::string want = p.master() ? std::string() : fmt::format("/dev/pts/{}", p.index());
    if (p.master() ? (p.path() != "/dev/ptmx" && p.path() != "/dev/pts/ptmx") : p.path() != want)
        return failf(EINVAL, "pty {} {} has path \"{}\"", p.index(), p.master() ? "master" : "slave", p.path());
    if (!p.master() && (p.locked() || p.packet_mode() || !p.output().empty()))
        return failf(EINVAL, "pty {} slave has master-only state", p.index());
    if (p.output().size() > kPtyMasterQueueMax || (p.packet_mode() && !p.output().empty()))
        return failf(EINVAL, "pty {}: {} bytes of output{}, at most {}", p.index(), p.output().size(),
                     p.packet_mode() ? " in packet mode" : "", p.packet_mode() ? 0 : kPtyMasterQueueMax);
    if ((p.ctty_sid() != 0) != (p.fg_pgrp() != 0) || p.ctty_sid() < 0 || p.fg_pgrp() < 0 ||
        (p.master() && p.ctty_sid() != 0))
        return failf(EINVAL, "pty {}: bad controlling-terminal state (session {}, group {})", p.index(), p.ctty_sid(),
                     p.fg_pgrp());
    TRY_VOID_CTX(validate_termios(p.termios()), "pty {}", p.index());
    return {};
}

std::string group_pty(const images::FileEntry& e) { return fmt::format("pty:{}", e.pty().index()); }

// The master of pty `p.index()` in this process: created on first use with the dumped index,
// unlocked, termios and window size set; kept in c.ptys.
Expected<int> pty_object(KindRestoreContext& c, const images::PtyFile& p, const std::string& ptmx) {
    if (auto it = c.ptys.find(p.index()); it != c.ptys.end())
        return it->second.get();
    // Every open below the wanted index takes a free index; all are closed again on return.
    std::vector<UniqueFd> spare;
    for (;;) {
        UniqueFd m(open(ptmx.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!m)
            return fail_errno("pty {}: open {}", p.index(), ptmx);
        unsigned int got = 0;
        if (ioctl(m.get(), TIOCGPTN, &got) != 0)
            return fail_errno("pty {}: TIOCGPTN", p.index());
        if (got == p.index()) {
            int unlock = 0;
            if (ioctl(m.get(), TIOCSPTLCK, &unlock) != 0)
                return fail_errno("pty {}: TIOCSPTLCK", p.index());
            TRY_VOID_CTX(apply_termios(m.get(), p.termios()), "pty {}", p.index());
            UniqueFd high = TRY(c.to_high(std::move(m)));
            int fd = high.get();
            c.ptys.emplace(p.index(), std::move(high));
            return fd;
        }
        if (got > p.index())
            return failf(EBUSY, "pty index {} is in use by another pty (the kernel gave {}); /dev/pts/{} cannot be "
                                "restored", p.index(), got, p.index());
        if (spare.size() >= kMaxPtyIndex)
            return failf(EBUSY, "pty {}: no free index found", p.index());
        spare.push_back(std::move(m));
    }
}

Expected<UniqueFd> open_pty(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& p = e.pty();
    int obj = TRY(pty_object(c, p, p.master() ? p.path() : "/dev/ptmx"));
    UniqueFd fd;
    if (p.master()) {
        // A master has exactly one description: the object itself.
        fd.reset(fcntl(obj, F_DUPFD_CLOEXEC, c.high_fd));
        if (!fd)
            return fail_errno("pty {}: dup of the master", p.index());
        // Before packet mode and the lock: the queue is plain bytes, as dumped.
        if (!p.output().empty())
            TRY_VOID_CTX(put_pty_master_queue(fd.get(), p.output()), "pty {}: {} bytes the master had not read",
                         p.index(), p.output().size());
        if (int pkt = p.packet_mode(); ioctl(fd.get(), TIOCPKT, &pkt) != 0)
            return fail_errno("pty {}: TIOCPKT", p.index());
        if (p.locked()) {
            int lock = 1;
            if (ioctl(fd.get(), TIOCSPTLCK, &lock) != 0)
                return fail_errno("pty {}: TIOCSPTLCK", p.index());
        }
    } else {
        // O_NOCTTY: the controlling terminal is set by late_restore in the session leader.
        // Without O_CLOEXEC: TIOCGPTPEER keeps it in the description's f_flags (fdinfo would show
        // it on every fd of it); the fd flag is set just below instead.
        int flags = (open_flags(p.flags()) & ~(O_NOFOLLOW | O_CLOEXEC)) | O_NOCTTY;
        fd.reset(ioctl(obj, TIOCGPTPEER, flags));
        if (!fd)
            return fail_errno("pty {}: opening the slave (TIOCGPTPEER, flags 0{:o})", p.index(), flags);
        if (fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0)
            return fail_errno("pty {}: FD_CLOEXEC", p.index());
    }
    TRY_VOID_CTX(set_status_flags(fd.get(), p.flags()), "pty {}", p.index());
    return c.to_high(std::move(fd));
}

FdRefs refs_pty(const images::FileEntry& e) { return FdRefs{e.pty().ctty_sid(), {}}; }

// In the session leader, after setsid(): the slave becomes its controlling terminal again.
Status ctty_pty(KindRestoreContext&, const images::FileEntry& e, int fd) {
    const auto& p = e.pty();
    if (p.ctty_sid() == 0)
        return {};
    if (getsid(0) != getpid())
        return failf(EPERM, "pty {}: pid {} is not a session leader and cannot take its controlling terminal",
                     p.index(), getpid());
    if (ioctl(fd, TIOCSCTTY, 0) != 0)
        return fail_errno("pty {}: TIOCSCTTY", p.index());
    // The foreground group may be one that is gone (or not restored yet): then it stays ours.
    if (kill(-p.fg_pgrp(), 0) == 0 || errno == EPERM) {
        pid_t pg = p.fg_pgrp();
        if (ioctl(fd, TIOCSPGRP, &pg) != 0)
            return fail_errno("pty {}: TIOCSPGRP {}", p.index(), pg);
    }
    return {};
}

}  // namespace

const FdKindOps kPtyMasterKind{
    .name = "pty master",
    .kind = images::FD_PTY,
    .match = is_ptmx,
    .dump = dump_master,
    .validate = validate_pty,
    .group = group_pty,
    .open = open_pty,
};

const FdKindOps kPtySlaveKind{
    .name = "pty slave",
    .kind = images::FD_PTY,
    .match = is_pts,
    .precheck = precheck_pts,
    .dump = dump_pts,
    .validate = validate_pty,
    .group = group_pty,
    .open = open_pty,
    .refs = refs_pty,
    .late_restore = ctty_pty,
};

}  // namespace criu
