// Dump half of the fd kinds: preflight (nothing stopped) and FilesDumper (tree stopped).
#include <fcntl.h>

#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/fd_kinds.h"
#include "criu/files/file_locks.h"
#include "criu/files/sockets.h"
#include "images/image_io.h"

namespace criu {

namespace {

std::string refusal_message(const FdView& v, const FdKindOps& k) {
    return fmt::format("{}: {} ({})", v.where(), k.refusal, v.link);
}

// The locks held through fd `v`; without --file-locks a held lock is a blocker (as in CRIU:
// dropping it silently would let another process in while the restored one thinks it holds it).
Expected<std::vector<images::FileLock>> fd_locks(const FdView& v, const Options& opts) {
    auto locks = parse_fdinfo_locks(v.fdinfo);
    if (!locks)
        return failf(locks.error().err(), "{}: {} ({})", v.where(), locks.error().message(), v.link);
    if (!locks->empty() && !opts.file_locks)
        return failf(ENOTSUP, "{}: holds a {}; use --file-locks to checkpoint file locks", v.where(),
                     describe_lock(locks->front(), v.path()));
    return locks;
}

}  // namespace

Status preflight_fds(pid_t pid, const Options& opts, Log& log) {
    UniqueFd pidfd = TRY(open_pidfd(pid));
    std::vector<int> fds = TRY(list_target_fds(pid));
    std::vector<std::string> problems;
    for (int fd : fds) {
        auto v = inspect_target_fd(pidfd.get(), pid, fd);
        if (!v) {
            // The process runs on: an fd closed since the listing is no blocker.
            if (v.error().err() == EBADF || v.error().err() == ENOENT)
                continue;
            problems.push_back(v.error().str());
            continue;
        }
        const FdKindOps& k = classify_fd(*v);
        if (k.refusal) {
            problems.push_back(refusal_message(*v, k));
        } else if (k.precheck) {
            if (Status st = k.precheck(*v, opts); !st)
                problems.push_back(st.error().message());
        }
        if (auto l = fd_locks(*v, opts); !l)
            problems.push_back(l.error().message());
        log.debug("files", "preflight {}: {} {}", v->where(), k.name, v->link);
    }
    if (problems.empty()) {
        log.info("files", "pid {}: all {} fds can be dumped", pid, fds.size());
        return {};
    }
    for (const auto& p : problems)
        log.error("files", "{}", p);
    return failf(ENOTSUP, "{} of the {} fds of pid {} cannot be dumped: {}", problems.size(), fds.size(), pid,
                 fmt::join(problems, "; "));
}

class FilesDumperState {
public:
    struct Seen {
        pid_t pid;
        int fd;
        uint32_t id;
        images::FdKind kind;
    };
    std::vector<images::FileEntry> files;
    // Descriptions already dumped, by inode: only fds on the same inode can share one.
    std::multimap<InodeKey, Seen> seen;
    std::map<InodeKey, images::PipeData> pipe_data;
    std::map<InodeKey, std::string> ghosts;
    std::map<InodeKey, std::string> memfds;
    SocketDumpState sockets;
    bool ext_unix_sk = false;
    Log* log = nullptr;  // of the last dump_process_fds, for finish()
    uint32_t next_id = 1;
    bool finished = false;
};

FilesDumper::FilesDumper() : st_(std::make_unique<FilesDumperState>()) {}
FilesDumper::~FilesDumper() = default;
FilesDumper::FilesDumper(FilesDumper&&) noexcept = default;
FilesDumper& FilesDumper::operator=(FilesDumper&&) noexcept = default;

Status FilesDumper::dump_process_fds(pid_t pid, const Options& opts, Log& log, int images_dirfd) {
    auto& s = *st_;
    s.ext_unix_sk = opts.ext_unix_sk;
    s.log = &log;
    UniqueFd pidfd = TRY(open_pidfd(pid));
    std::vector<int> fds = TRY(list_target_fds(pid));
    std::string img = image_file_name(ImageType::Fdinfo, pid);
    ImageWriter w = TRY(ImageWriter::create_at(images_dirfd, img, ImageType::Fdinfo));
    // POSIX locks belong to the process and show on each of its fds on the file: keep one.
    std::set<std::string> posix_locks;

    for (int fd : fds) {
        FdView v = TRY(inspect_target_fd(pidfd.get(), pid, fd));
        const FdKindOps& k = classify_fd(v);
        if (k.refusal)
            return fail(ENOTSUP, refusal_message(v, k));
        if (k.precheck)
            TRY_VOID(k.precheck(v, opts));
        std::vector<images::FileLock> locks = TRY(fd_locks(v, opts));

        InodeKey key{v.st.st_dev, v.st.st_ino};
        const FilesDumperState::Seen* shared = nullptr;
        for (auto [it, end] = s.seen.equal_range(key); it != end && !shared; ++it) {
            bool same = TRY_CTX(same_file_description(pid, fd, it->second.pid, it->second.fd), "{}", v.where());
            if (same)
                shared = &it->second;
        }

        images::FdEntry fe;
        fe.set_fd(fd);
        fe.set_fd_flags((v.flags & O_CLOEXEC) ? FD_CLOEXEC : 0);
        if (shared) {
            fe.set_kind(shared->kind);
            fe.set_file_id(shared->id);
            log.debug("files", "{}: shares file {} with pid {} fd {}", v.where(), shared->id, shared->pid, shared->fd);
        } else {
            images::FileEntry e;
            e.set_id(s.next_id++);
            e.set_kind(*k.kind);
            KindDumpContext ctx{opts, log, images_dirfd, e.id(), s.pipe_data, s.ghosts, s.memfds, s.sockets};
            TRY_VOID_CTX(k.dump(ctx, v, e), "dumping {} {}", k.name, v.link);
            s.seen.emplace(key, FilesDumperState::Seen{pid, fd, e.id(), e.kind()});
            fe.set_kind(e.kind());
            fe.set_file_id(e.id());
            log.debug("files", "{}: {} {} is file {}", v.where(), k.name, v.link, e.id());
            s.files.push_back(std::move(e));
        }
        for (auto& l : locks) {
            // OFD and flock locks belong to the description: recorded where it was first seen.
            bool keep = l.kind() == images::LOCK_POSIX
                            ? posix_locks.insert(fmt::format("{}:{}:{}", key.first, key.second, l.SerializeAsString()))
                                  .second
                            : !shared;
            if (keep) {
                log.info("files", "{}: {}", v.where(), describe_lock(l, v.path()));
                *fe.add_locks() = std::move(l);
            }
        }
        TRY_VOID_CTX(w.write(fe), "pid {}", pid);
    }
    TRY_VOID_CTX(w.close(), "pid {}", pid);
    log.info("files", "pid {}: dumped {} fds", pid, fds.size());
    return {};
}

std::string FilesDumper::tcp_lock_table() const { return st_->sockets.tcp_lock_table(); }

Status FilesDumper::release_tcp(bool killed, Log& log) { return st_->sockets.tcp_release(killed, log); }

Status FilesDumper::finish(int images_dirfd) {
    auto& s = *st_;
    if (s.finished)
        return fail(EINVAL, "FilesDumper::finish called twice");
    s.finished = true;
    // Unix peers may live in any process of the tree: checked once all were dumped.
    Log quiet(0);
    TRY_VOID(s.sockets.finish_unix(s.files, s.ext_unix_sk, s.log ? *s.log : quiet));
    ImageWriter files =
        TRY(ImageWriter::create_at(images_dirfd, image_file_name(ImageType::Files), ImageType::Files));
    for (const auto& e : s.files)
        TRY_VOID(files.write(e));
    TRY_VOID(files.close());
    ImageWriter pipes =
        TRY(ImageWriter::create_at(images_dirfd, image_file_name(ImageType::PipeData), ImageType::PipeData));
    for (const auto& [key, d] : s.pipe_data)
        TRY_VOID(pipes.write(d));
    TRY_VOID(pipes.close());
    return {};
}

}  // namespace criu
