// Pipes (identity pipe:[ino]) and FIFOs (by path). Unread data is copied without consuming it:
// tee() from a read end into a temporary pipe (KERNEL-NOTES section 6), because the stolen fd
// shares the target's queue and a read() would take the data away from it. Restore creates
// each pipe once (both ends, even if one of them is not used), sets its size, writes the data
// back, and gives every dumped description its own open file description.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

std::string pipe_name(const images::PipeFile& p) {
    return p.fifo() ? fmt::format("FIFO {}", p.path()) : fmt::format("pipe:[{}]", p.pipe_ino());
}

Status precheck_pipe(const FdView& v, const Options&) {
    // Packet mode changes how writes are split into buffers; its restore needs pipe2(O_DIRECT).
    if (v.flags & O_DIRECT)
        return failf(ENOTSUP, "{}: packet-mode pipe (O_DIRECT) (not supported yet)", v.where());
    // A FIFO is reopened by path on restore; an unlinked one has none.
    if (v.link[0] == '/' && v.st.st_nlink == 0)
        return failf(ENOTSUP, "{}: FIFO {} was unlinked and cannot be reopened (not supported yet)", v.where(),
                     v.path());
    return {};
}

Expected<images::PipeData> capture_pipe(const FdView& v) {
    images::PipeData d;
    d.set_pipe_ino(v.st.st_ino);
    d.set_dev(v.st.st_dev);
    int size = fcntl(v.stolen.get(), F_GETPIPE_SZ);
    if (size < 0)
        return fail_errno("{}: F_GETPIPE_SZ", v.where());
    d.set_pipe_size(static_cast<uint32_t>(size));
    int queued = 0;
    if (ioctl(v.stolen.get(), FIONREAD, &queued) != 0)
        return fail_errno("{}: FIONREAD", v.where());
    if (queued <= 0)
        return d;

    // tee() needs a readable end. A write-only fd gets a new read-only description of the same
    // pipe through the magic link; O_NONBLOCK keeps a FIFO open from waiting for a writer.
    UniqueFd reopened;
    int rd = v.stolen.get();
    if ((v.flags & O_ACCMODE) == O_WRONLY) {
        reopened.reset(open(fmt::format("/proc/{}/fd/{}", v.pid, v.fd).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        if (!reopened)
            return fail_errno("{}: opening a read end to copy the queued data", v.where());
        rd = reopened.get();
    }
    int tmp[2];
    if (pipe2(tmp, O_CLOEXEC | O_NONBLOCK) != 0)
        return fail_errno("{}: temporary pipe", v.where());
    UniqueFd tmp_rd(tmp[0]), tmp_wr(tmp[1]);
    // As many slots as the source, so that one tee() takes every buffer.
    if (fcntl(tmp_wr.get(), F_SETPIPE_SZ, size) < 0)
        return fail_errno("{}: F_SETPIPE_SZ {} on the temporary pipe", v.where(), size);
    ssize_t n = tee(rd, tmp_wr.get(), static_cast<size_t>(queued), SPLICE_F_NONBLOCK);
    if (n < 0)
        return fail_errno("{}: tee of {} queued bytes", v.where(), queued);
    if (n != queued)
        return failf(EIO, "{}: tee copied {} of the {} queued bytes", v.where(), n, queued);
    std::string data(static_cast<size_t>(n), '\0');
    size_t got = 0;
    while (got < data.size()) {
        ssize_t r = read(tmp_rd.get(), data.data() + got, data.size() - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return fail_errno("{}: reading the copied pipe data", v.where());
        got += static_cast<size_t>(r);
    }
    d.set_data(std::move(data));
    return d;
}

Status dump_pipe(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    bool fifo = v.link[0] == '/';
    auto* p = out.mutable_pipe();
    p->set_pipe_ino(v.st.st_ino);
    p->set_dev(v.st.st_dev);
    p->set_flags(v.flags & ~uint32_t(O_CLOEXEC));
    p->set_write_end((v.flags & O_ACCMODE) == O_WRONLY);
    p->set_fifo(fifo);
    if (fifo)
        p->set_path(v.path());
    InodeKey key{v.st.st_dev, v.st.st_ino};
    if (!c.pipe_data.contains(key)) {
        images::PipeData d = TRY(capture_pipe(v));
        c.log.debug("files", "{}: {} size {} holds {} bytes", v.where(), pipe_name(*p), d.pipe_size(), d.data().size());
        c.pipe_data.emplace(key, std::move(d));
    }
    return {};
}

Status validate_pipe(const images::FileEntry& e) {
    if (!e.has_pipe())
        return fail(EINVAL, "pipe entry without PipeFile data");
    const auto& p = e.pipe();
    if (p.fifo() != (e.kind() == images::FD_FIFO))
        return failf(EINVAL, "{}: kind {} disagrees with fifo={}", pipe_name(p), images::FdKind_Name(e.kind()), p.fifo());
    TRY_VOID_CTX(validate_open_flags(p.flags()), "{}", pipe_name(p));
    if (p.flags() & (O_DIRECT | O_PATH | O_DIRECTORY))
        return failf(EINVAL, "{}: flags 0{:o} are not pipe flags", pipe_name(p), p.flags());
    uint32_t acc = p.flags() & O_ACCMODE;
    if (!p.fifo() && acc == O_RDWR)
        return failf(EINVAL, "{}: an anonymous pipe end cannot be O_RDWR", pipe_name(p));
    if (p.write_end() != (acc == O_WRONLY))
        return failf(EINVAL, "{}: write_end={} disagrees with access mode {}", pipe_name(p), p.write_end(), acc);
    if (p.fifo())
        TRY_VOID_CTX(validate_path(p.path()), "FIFO");
    return {};
}

std::string group_pipe(const images::FileEntry& e) {
    return fmt::format("pipe:{}:{}", e.pipe().dev(), e.pipe().pipe_ino());
}

Status fill_pipe(int wr, const images::PipeData& d, const std::string& name) {
    // Grow (or shrink) before writing: F_SETPIPE_SZ below the queued size fails with EBUSY.
    if (d.pipe_size() && fcntl(wr, F_SETPIPE_SZ, static_cast<int>(d.pipe_size())) < 0)
        return fail_errno("{}: F_SETPIPE_SZ {}", name, d.pipe_size());
    // Non-blocking: the data fits by validation; if it somehow does not, fail instead of hanging.
    int fl = fcntl(wr, F_GETFL);
    if (fl < 0 || fcntl(wr, F_SETFL, fl | O_NONBLOCK) < 0)
        return fail_errno("{}: F_SETFL", name);
    size_t done = 0;
    while (done < d.data().size()) {
        ssize_t n = write(wr, d.data().data() + done, d.data().size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno("{}: writing back {} bytes of data ({} written)", name, d.data().size(), done);
        done += static_cast<size_t>(n);
    }
    return {};
}

Expected<PipeObject*> ensure_pipe(KindRestoreContext& c, const images::PipeFile& p) {
    InodeKey key{p.dev(), p.pipe_ino()};
    if (auto it = c.pipes.find(key); it != c.pipes.end())
        return &it->second;
    std::string name = pipe_name(p);
    PipeObject o;
    int wr;
    if (!p.fifo()) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return fail_errno("{}: pipe2", name);
        UniqueFd rd(fds[0]), w(fds[1]);
        o.rd = TRY(c.to_high(std::move(rd)));
        o.wr = TRY(c.to_high(std::move(w)));
        wr = o.wr.get();
    } else {
        // O_RDWR opens a FIFO without waiting for a peer, and keeps it (and the data written
        // back) alive until the dumped ends are open.
        UniqueFd keeper(open(p.path().c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!keeper)
            return fail_errno("{}: open", name);
        struct stat st;
        if (fstat(keeper.get(), &st) != 0 || !S_ISFIFO(st.st_mode))
            return failf(EINVAL, "{} is not a FIFO any more", p.path());
        o.rd = TRY(c.to_high(std::move(keeper)));
        wr = o.rd.get();
    }
    if (auto d = c.pipe_data.find(key); d != c.pipe_data.end())
        TRY_VOID(fill_pipe(wr, d->second, name));
    return &c.pipes.emplace(key, std::move(o)).first->second;
}

Expected<UniqueFd> open_pipe(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& p = e.pipe();
    PipeObject* o = TRY(ensure_pipe(c, p));
    std::string name = pipe_name(p);
    UniqueFd fd;
    if (p.fifo()) {
        // Cannot block: the keeper is both a reader and a writer.
        fd.reset(open(p.path().c_str(), open_flags(p.flags())));
        if (!fd)
            return fail_errno("{}: open with flags 0{:o}", name, p.flags());
        return c.to_high(std::move(fd));
    }
    int end = p.write_end() ? o->wr.get() : o->rd.get();
    if (c.first_pipe_ends.contains(e.id())) {
        fd.reset(fcntl(end, F_DUPFD_CLOEXEC, c.high_fd));
    } else {
        // Another description of the same end: a fresh open of the pipe inode.
        int acc = p.write_end() ? O_WRONLY : O_RDONLY;
        fd.reset(open(fmt::format("/proc/self/fd/{}", end).c_str(), acc | O_CLOEXEC | O_NONBLOCK));
    }
    if (!fd)
        return fail_errno("{}: {} end", name, p.write_end() ? "write" : "read");
    if (fcntl(fd.get(), F_SETFL, p.flags() & (O_NONBLOCK | O_ASYNC)) != 0)
        return fail_errno("{}: F_SETFL 0{:o}", name, p.flags());
    return c.to_high(std::move(fd));
}

bool is_fifo(const FdView& v) { return S_ISFIFO(v.st.st_mode); }

}  // namespace

const FdKindOps kPipeKind{
    .name = "pipe",
    .kind = images::FD_PIPE,
    .match = [](const FdView& v) { return is_fifo(v) && v.link.starts_with("pipe:["); },
    .precheck = precheck_pipe,
    .dump = dump_pipe,
    .validate = validate_pipe,
    .group = group_pipe,
    .open = open_pipe,
};

const FdKindOps kFifoKind{
    .name = "FIFO",
    .kind = images::FD_FIFO,
    .match = [](const FdView& v) { return is_fifo(v) && !v.link.empty() && v.link[0] == '/'; },
    .precheck = precheck_pipe,
    .dump = dump_pipe,
    .validate = validate_pipe,
    .group = group_pipe,
    .open = open_pipe,
};

}  // namespace criu
