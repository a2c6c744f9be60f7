// Character devices by path (/dev/null, /dev/zero, /dev/urandom, ...), checked by device
// number on restore, and the job's terminal with --shell-job: a shell job's terminal belongs
// to the user's session, not to the job, so restore gives the job the terminal of the criu
// that restores it (like CRIU's --shell-job).
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

std::string devno(uint64_t rdev) { return fmt::format("{}:{}", major(rdev), minor(rdev)); }

// By device number too: a terminal whose master was closed is hung up and fails TCGETS, but
// it is still the job's terminal (Documentation/admin-guide/devices.txt).
bool is_terminal(const FdView& v) {
    if (!S_ISCHR(v.st.st_mode))
        return false;
    unsigned ma = major(v.st.st_rdev), mi = minor(v.st.st_rdev);
    bool tty_major = ma == 3 || ma == 4 || (ma >= 136 && ma <= 143) || (ma == 5 && mi <= 1);
    return tty_major || isatty(v.stolen.get());
}

Status precheck_chr(const FdView& v, const Options&) {
    if (v.st.st_nlink == 0)
        return failf(ENOTSUP, "{}: device node {} was unlinked and cannot be reopened by path", v.where(), v.path());
    return {};
}

Status dump_chr(KindDumpContext&, const FdView& v, images::FileEntry& out) {
    auto* d = out.mutable_chr();
    d->set_path(v.path());
    d->set_flags(v.flags & ~uint32_t(O_CLOEXEC));
    d->set_rdev(v.st.st_rdev);
    d->set_pos(v.pos);
    return {};
}

Status validate_chr(const images::FileEntry& e) {
    if (!e.has_chr())
        return fail(EINVAL, "character-device entry without CharDev data");
    TRY_VOID(validate_path(e.chr().path()));
    TRY_VOID_CTX(validate_open_flags(e.chr().flags()), "{}", e.chr().path());
    return {};
}

Expected<UniqueFd> open_chr(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& d = e.chr();
    UniqueFd fd(open(d.path().c_str(), open_flags(d.flags()) | O_NOCTTY));
    if (!fd)
        return fail_errno("open {} with flags 0{:o}", d.path(), d.flags());
    struct stat st;
    if (fstat(fd.get(), &st) != 0)
        return fail_errno("fstat {}", d.path());
    // The same path may name another device now (another container, a different /dev).
    if (!S_ISCHR(st.st_mode) || st.st_rdev != d.rdev())
        return failf(ENODEV, "{} was character device {} when dumped and is {} {} now", d.path(), devno(d.rdev()),
                     S_ISCHR(st.st_mode) ? "character device" : "not a character device", devno(st.st_rdev));
    if (d.pos() != 0 && lseek(fd.get(), static_cast<off_t>(d.pos()), SEEK_SET) < 0)
        return fail_errno("{}: restoring offset {}", d.path(), d.pos());
    return c.to_high(std::move(fd));
}

Status precheck_tty(const FdView& v, const Options& opts) {
    if (!opts.shell_job)
        return failf(ENOTSUP,
                     "{}: terminal {} belongs to the session; use --shell-job to restore it onto the terminal of "
                     "the restoring criu",
                     v.where(), v.link);
    return {};
}

Status dump_tty(KindDumpContext&, const FdView& v, images::FileEntry& out) {
    auto* t = out.mutable_tty();
    t->set_path(v.path());
    t->set_flags(v.flags & ~uint32_t(O_CLOEXEC));
    t->set_rdev(v.st.st_rdev);
    t->set_shell_job(true);
    return {};
}

Status validate_tty(const images::FileEntry& e) {
    if (!e.has_tty())
        return fail(EINVAL, "terminal entry without TtyFile data");
    if (!e.tty().shell_job())
        return failf(ENOTSUP, "terminal {} was not dumped with --shell-job", e.tty().path());
    TRY_VOID_CTX(validate_open_flags(e.tty().flags()), "terminal {}", e.tty().path());
    return {};
}

Expected<UniqueFd> open_tty(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& t = e.tty();
    if (c.tty_fd < 0)
        return failf(ENOTTY,
                     "the process used terminal {} (--shell-job), but the restoring criu has no terminal on its "
                     "stdin, stdout or stderr",
                     t.path());
    // A new description of our terminal with the dumped flags; O_NOCTTY because the controlling
    // terminal belongs to session restore, not to opening an fd.
    UniqueFd fd(open(fmt::format("/proc/self/fd/{}", c.tty_fd).c_str(),
                     (open_flags(t.flags()) & ~O_NOFOLLOW) | O_NOCTTY));
    if (!fd)
        return fail_errno("reopening the restoring criu's terminal for {}", t.path());
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kTtyKind{
    .name = "terminal",
    .kind = images::FD_TTY,
    .match = is_terminal,
    .precheck = precheck_tty,
    .dump = dump_tty,
    .validate = validate_tty,
    .open = open_tty,
};

const FdKindOps kCharDevKind{
    .name = "character device",
    .kind = images::FD_CHR,
    .match = [](const FdView& v) { return S_ISCHR(v.st.st_mode) && !v.link.empty() && v.link[0] == '/'; },
    .precheck = precheck_chr,
    .dump = dump_chr,
    .validate = validate_chr,
    .open = open_chr,
};

}  // namespace criu
