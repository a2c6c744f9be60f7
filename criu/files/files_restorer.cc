// Restore half of the fd kinds: load and validate every image first, then create objects
// shared by several processes in criu (prepare_shared), then install each process's fds from
// inside it (restore_process_fds).
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/fd_kinds.h"
#include "criu/files/file_locks.h"
#include "images/image_io.h"

namespace criu {
namespace {

// The kernel's default fs.nr_open: no process can have an fd at or above it.
constexpr int kMaxFdNumber = 1 << 20;
// F_GETPIPE_SZ gives a power of two number of pages; 256 MiB is far above any pipe-max-size
// a dump could have met, and well below what a hostile record could make us allocate.
constexpr uint32_t kMaxPipeSize = 256u << 20;

Status move_high(UniqueFd& fd, int high_fd) {
    if (!fd || fd.get() >= high_fd)
        return {};
    int n = fcntl(fd.get(), F_DUPFD_CLOEXEC, high_fd);
    if (n < 0)
        return fail_errno("F_DUPFD_CLOEXEC above fd {}", high_fd);
    fd.reset(n);
    return {};
}

}  // namespace

class FilesRestorerState {
public:
    std::map<uint32_t, images::FileEntry> files;
    std::map<uint32_t, const FdKindOps*> ops;
    std::map<pid_t, std::vector<images::FdEntry>> fds;  // sorted by fd number
    std::map<InodeKey, images::PipeData> pipe_data;
    std::set<uint32_t> first_pipe_ends;
    std::map<uint32_t, std::string> group_of;  // file id -> object it belongs to
    std::map<std::string, std::set<pid_t>> group_pids;
    int max_fd = -1;
    UniqueFd dirfd;
    UniqueFd tty;
    bool prepared = false;
    std::map<uint32_t, UniqueFd> held;  // descriptions opened by prepare_shared
    // Per pid: entries with FdKindOps::late_restore that pid runs, referenced ones first.
    std::map<pid_t, std::vector<uint32_t>> late_order;
    KindRestoreContext ctx{nullptr, -1, -1, 0, pipe_data, first_pipe_ends, {}, {}, {}};

    Status load_files(Log& log);
    Status load_pipe_data();
    Status load_fdinfo(pid_t pid);
    Status check_refs();
    bool shared(uint32_t id) const { return group_pids.at(group_of.at(id)).size() > 1; }
};

Status FilesRestorerState::load_files(Log& log) {
    auto r = TRY(ImageReader::open_at(dirfd.get(), image_file_name(ImageType::Files), ImageType::Files));
    std::map<std::pair<InodeKey, bool>, uint32_t> first_end;
    for (;;) {
        images::FileEntry e;
        if (!TRY(r.read(e)))
            break;
        std::string where = fmt::format("{} record {} (file id {})", r.path(), r.records_read(), e.id());
        if (e.id() == 0 || files.contains(e.id()))
            return failf(EINVAL, "{}: file id {} is {}", where, e.id(), e.id() == 0 ? "zero" : "a duplicate");
        const FdKindOps* k = fd_kind_ops(e.kind());
        if (!k)
            return failf(ENOTSUP, "{}: kind {} cannot be restored", where,
                         images::FdKind_IsValid(e.kind()) ? images::FdKind_Name(e.kind()) : std::to_string(e.kind()));
        TRY_VOID_CTX(k->validate(e), "{}", where);
        if (k->validate_at)
            TRY_VOID_CTX(k->validate_at(dirfd.get(), e), "{}", where);
        if (e.kind() == images::FD_PIPE) {
            auto key = std::make_pair(InodeKey{e.pipe().dev(), e.pipe().pipe_ino()}, e.pipe().write_end());
            auto [it, fresh] = first_end.emplace(key, e.id());
            if (!fresh)
                it->second = std::min(it->second, e.id());
        }
        std::string g = k->group ? k->group(e) : std::string();
        group_of[e.id()] = g.empty() ? fmt::format("file:{}", e.id()) : g;
        ops[e.id()] = k;
        files.emplace(e.id(), std::move(e));
    }
    for (const auto& [key, id] : first_end)
        first_pipe_ends.insert(id);
    log.debug("files", "{}: {} open files", r.path(), files.size());
    return {};
}

Status FilesRestorerState::load_pipe_data() {
    std::set<InodeKey> pipes;
    for (const auto& [id, e] : files)
        if (e.has_pipe())
            pipes.insert({e.pipe().dev(), e.pipe().pipe_ino()});
    auto r = TRY(ImageReader::open_at(dirfd.get(), image_file_name(ImageType::PipeData), ImageType::PipeData));
    for (;;) {
        images::PipeData d;
        if (!TRY(r.read(d)))
            break;
        std::string where = fmt::format("{} record {} (pipe ino {})", r.path(), r.records_read(), d.pipe_ino());
        InodeKey key{d.dev(), d.pipe_ino()};
        if (!pipes.contains(key))
            return failf(EINVAL, "{}: no pipe or FIFO in files.img has this inode", where);
        if (pipe_data.contains(key))
            return failf(EINVAL, "{}: a second data record for one pipe", where);
        uint32_t sz = d.pipe_size();
        if (sz != 0 && (sz < 4096 || sz > kMaxPipeSize || (sz & (sz - 1)) != 0))
            return failf(EINVAL, "{}: pipe size {} is not a power of two between 4096 and {}", where, sz, kMaxPipeSize);
        if (d.data().size() > (sz ? sz : 65536u))
            return failf(EINVAL, "{}: {} bytes of data do not fit a pipe of size {}", where, d.data().size(), sz);
        pipe_data.emplace(key, std::move(d));
    }
    return {};
}

Status FilesRestorerState::load_fdinfo(pid_t pid) {
    auto r = TRY(ImageReader::open_at(dirfd.get(), image_file_name(ImageType::Fdinfo, pid), ImageType::Fdinfo));
    std::vector<images::FdEntry> list = TRY(r.read_all<images::FdEntry>());
    std::set<int> numbers;
    for (size_t i = 0; i < list.size(); ++i) {
        const auto& fe = list[i];
        std::string where = fmt::format("{} record {} (fd {})", r.path(), i + 1, fe.fd());
        if (fe.fd() < 0 || fe.fd() >= kMaxFdNumber)
            return failf(EINVAL, "{}: fd number {} is out of range [0, {})", where, fe.fd(), kMaxFdNumber);
        if (!numbers.insert(fe.fd()).second)
            return failf(EINVAL, "{}: fd {} appears twice", where, fe.fd());
        if (fe.fd_flags() & ~uint32_t(FD_CLOEXEC))
            return failf(EINVAL, "{}: unknown fd flags {:#x}", where, fe.fd_flags());
        auto f = files.find(fe.file_id());
        if (f == files.end())
            return failf(EINVAL, "{}: file id {} is not in files.img", where, fe.file_id());
        for (const auto& l : fe.locks())
            TRY_VOID_CTX(validate_lock(l), "{}", where);
        if (f->second.kind() != fe.kind())
            return failf(EINVAL, "{}: kind {} disagrees with file id {} of kind {}", where,
                         images::FdKind_Name(fe.kind()), fe.file_id(), images::FdKind_Name(f->second.kind()));
        group_pids[group_of.at(fe.file_id())].insert(pid);
        max_fd = std::max(max_fd, fe.fd());
    }
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.fd() < b.fd(); });
    fds[pid] = std::move(list);
    return {};
}

Status FilesRestorerState::check_refs() {
    std::map<pid_t, std::map<int, uint32_t>> id_at;  // pid -> fd -> file id
    std::set<uint32_t> used;                          // entries the loaded processes restore
    for (const auto& [pid, list] : fds)
        for (const auto& fe : list) {
            id_at[pid][fe.fd()] = fe.file_id();
            used.insert(fe.file_id());
        }
    std::map<uint32_t, std::vector<uint32_t>> deps;  // late entry -> late entries it names, same pid
    std::map<pid_t, std::vector<uint32_t>> late;
    for (const auto& [id, e] : files) {
        const FdKindOps* k = ops.at(id);
        if (!k->refs || !used.contains(id))
            continue;
        FdRefs r = k->refs(e);
        if (r.pid == 0 && r.fds.empty())
            continue;
        std::string where = fmt::format("files.img file id {} ({})", id, k->name);
        auto at = id_at.find(r.pid);
        if (at == id_at.end())
            return failf(EINVAL, "{}: names fds of pid {}, which is not being restored", where, r.pid);
        bool holds = std::any_of(at->second.begin(), at->second.end(), [&](const auto& f) { return f.second == id; });
        if (!holds)
            return failf(EINVAL, "{}: names fds of pid {}, which does not have it open", where, r.pid);
        for (int fd : r.fds) {
            auto t = at->second.find(fd);
            if (t == at->second.end())
                return failf(EINVAL, "{}: refers to fd {}, which pid {} does not have", where, fd, r.pid);
            if (t->second == id)
                return failf(EINVAL, "{}: refers to fd {}, which is itself", where, fd);
            const images::FileEntry& target = files.at(t->second);
            const FdKindOps* tk = ops.at(t->second);
            if (tk->late_restore && tk->refs(target).pid == r.pid)
                deps[id].push_back(t->second);
        }
        late[r.pid].push_back(id);
    }
    // Depth-first, referenced entries first; an entry met again while being visited is a cycle
    // (epoll A watching B watching A), which the kernel refuses (ELOOP) and no dump can have.
    for (const auto& [pid, ids] : late) {
        std::map<uint32_t, int> state;  // 1: being visited, 2: done
        std::vector<uint32_t>& order = late_order[pid];
        auto visit = [&](auto&& self, uint32_t id) -> Status {
            if (state[id] == 2)
                return {};
            if (state[id] == 1)
                return failf(ELOOP, "files.img file id {} ({}) is part of a cycle of references in pid {}", id,
                             ops.at(id)->name, pid);
            state[id] = 1;
            for (uint32_t d : deps[id])
                TRY_VOID(self(self, d));
            state[id] = 2;
            order.push_back(id);
            return {};
        };
        for (uint32_t id : ids)
            TRY_VOID(visit(visit, id));
    }
    return {};
}

Expected<FilesRestorer> FilesRestorer::load(int images_dirfd, const std::vector<pid_t>& pids, Log& log) {
    auto st = std::make_unique<FilesRestorerState>();
    st->dirfd.reset(fcntl(images_dirfd, F_DUPFD_CLOEXEC, 0));
    if (!st->dirfd)
        return fail_errno("dup of the images directory fd");
    TRY_VOID(st->load_files(log));
    TRY_VOID(st->load_pipe_data());
    for (pid_t pid : pids)
        TRY_VOID_CTX(st->load_fdinfo(pid), "pid {}", pid);
    TRY_VOID(st->check_refs());

    // Everything held from now on lives above every target fd, where installing cannot hit it.
    int high = std::max(st->max_fd + 1, 3);
    TRY_VOID(move_high(st->dirfd, high));
    bool has_tty = std::any_of(st->files.begin(), st->files.end(),
                               [](const auto& f) { return f.second.kind() == images::FD_TTY; });
    for (int fd = 0; fd <= 2 && has_tty && !st->tty; ++fd)
        if (isatty(fd))
            st->tty.reset(fcntl(fd, F_DUPFD_CLOEXEC, high));
    st->ctx.images_dirfd = st->dirfd.get();
    st->ctx.files = &st->files;
    st->ctx.tty_fd = st->tty ? st->tty.get() : -1;
    st->ctx.high_fd = high;
    log.info("files", "loaded {} open files for {} processes, highest fd {}", st->files.size(), pids.size(),
             st->max_fd);
    return FilesRestorer(std::move(st));
}

FilesRestorer::FilesRestorer(std::unique_ptr<FilesRestorerState> st) : st_(std::move(st)) {}
FilesRestorer::FilesRestorer(FilesRestorer&&) noexcept = default;
FilesRestorer& FilesRestorer::operator=(FilesRestorer&&) noexcept = default;
FilesRestorer::~FilesRestorer() = default;

int FilesRestorer::max_target_fd(pid_t pid) const {
    auto it = st_->fds.find(pid);
    return it == st_->fds.end() || it->second.empty() ? -1 : it->second.back().fd();
}

int FilesRestorer::max_target_fd() const { return st_->max_fd; }

Expected<UniqueFd> FilesRestorer::memfd_for(uint64_t dev, uint64_t ino, Log& log) {
    auto& s = *st_;
    for (const auto& [id, e] : s.files) {
        if (e.kind() != images::FD_MEMFD || e.memfd().dev() != dev || e.memfd().ino() != ino)
            continue;
        s.ctx.log = &log;
        int obj = TRY_CTX(memfd_object(s.ctx, e), "memfd of file id {}", id);
        UniqueFd fd(fcntl(obj, F_DUPFD_CLOEXEC, s.ctx.high_fd));
        if (!fd)
            return fail_errno("memfd \"{}\": F_DUPFD_CLOEXEC above fd {}", e.memfd().name(), s.ctx.high_fd);
        return fd;
    }
    return UniqueFd();
}

Status FilesRestorer::prepare_shared(Log& log) {
    auto& s = *st_;
    if (s.prepared)
        return fail(EINVAL, "FilesRestorer::prepare_shared called twice");
    s.ctx.log = &log;
    for (const auto& [id, e] : s.files) {
        if (!s.group_pids.contains(s.group_of.at(id)) || !s.shared(id))
            continue;
        UniqueFd fd = TRY_CTX(s.ops.at(id)->open(s.ctx, e), "preparing shared {} (file id {})", s.ops.at(id)->name, id);
        log.debug("files", "file id {} ({}) shared by pids {}: fd {}", id, s.ops.at(id)->name,
                  fmt::join(s.group_pids.at(s.group_of.at(id)), ","), fd.get());
        s.held.emplace(id, std::move(fd));
    }
    s.prepared = true;
    return {};
}

Status FilesRestorer::restore_process_fds(pid_t pid, const Options&, Log& log) {
    auto& s = *st_;
    auto list_it = s.fds.find(pid);
    if (list_it == s.fds.end())
        return failf(EINVAL, "pid {}: its fdinfo image was not loaded", pid);
    const auto& list = list_it->second;
    s.ctx.log = &log;

    std::map<uint32_t, UniqueFd> local;
    for (const auto& fe : list) {
        uint32_t id = fe.file_id();
        if (s.held.contains(id) || local.contains(id))
            continue;
        const FdKindOps* k = s.ops.at(id);
        if (s.shared(id)) {
            return failf(EINVAL,
                         "pid {} fd {}: {} (file id {}) is shared with pids {}; FilesRestorer::prepare_shared() "
                         "must run in criu before the tree is forked",
                         pid, fe.fd(), k->name, id, fmt::join(s.group_pids.at(s.group_of.at(id)), ","));
        }
        UniqueFd fd = TRY_CTX(k->open(s.ctx, s.files.at(id)), "pid {} fd {}: restoring {} (file id {})", pid, fe.fd(),
                              k->name, id);
        local.emplace(id, std::move(fd));
    }

    // Install in ascending order; numbers in between did not exist in the dumped process.
    int next = 0;
    for (const auto& fe : list) {
        if (fe.fd() > next && syscall(SYS_close_range, next, fe.fd() - 1, 0) != 0)
            return fail_errno("pid {}: close_range {}-{}", pid, next, fe.fd() - 1);
        auto h = s.held.find(fe.file_id());
        int src = h != s.held.end() ? h->second.get() : local.at(fe.file_id()).get();
        if (dup3(src, fe.fd(), (fe.fd_flags() & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
            return fail_errno("pid {} fd {}: dup3 of {} (file id {})", pid, fe.fd(), s.ops.at(fe.file_id())->name,
                              fe.file_id());
        next = fe.fd() + 1;
    }
    // Entries that name other fds of this process (an epoll's targets) now that all are there.
    if (auto late = s.late_order.find(pid); late != s.late_order.end()) {
        for (uint32_t id : late->second) {
            auto h = s.held.find(id);
            int fd = h != s.held.end() ? h->second.get() : local.at(id).get();
            auto fe = std::find_if(list.begin(), list.end(), [&](const auto& f) { return f.file_id() == id; });
            TRY_VOID_CTX(s.ops.at(id)->late_restore(s.ctx, s.files.at(id), fd), "pid {} fd {}: restoring {} (file id {})",
                         pid, fe->fd(), s.ops.at(id)->name, id);
        }
    }
    log.info("files", "pid {}: restored {} fds", pid, list.size());

    // This is a forked copy of criu becoming the target: nothing held here may leak into it.
    local.clear();
    s.held.clear();
    s.ctx.pipes.clear();
    s.ctx.ghosts.clear();
    s.ctx.memfds.clear();
    s.ctx.ptys.clear();
    s.ctx.sockets.clear();
    s.tty.reset();
    s.dirfd.reset();
    s.ctx.tty_fd = -1;
    s.ctx.images_dirfd = -1;

    // Locks last: closing any fd on a file drops this process's POSIX locks on it (fcntl(2)), and
    // the fds held until here may be such fds.
    for (const auto& fe : list)
        for (const auto& l : fe.locks())
            TRY_VOID_CTX(apply_lock(fe.fd(), l), "pid {} fd {}", pid, fe.fd());
    return {};
}

}  // namespace criu
