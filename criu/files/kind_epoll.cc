// epoll: every registered target with its events and data, from fdinfo lines
// "tfd: 9 events: 19 data: 7  pos:0 ino:6f5c sdev:f".
//
// "tfd" is the fd number the target was registered under, which the process may have closed
// since (after a dup), or even reused for another file (KERNEL-NOTES pitfall 13). The target
// actually registered is found with kcmp(KCMP_EPOLL_TFD), which compares a file of the process
// with the toff-th entry of that tfd in the epoll; the image records the fd the target is at
// now. A target the process no longer has (it lives only in another process, or in flight in
// a unix socket) is refused.
//
// Restore creates an empty epoll with the other fds and registers the targets with
// epoll_ctl(EPOLL_CTL_ADD) once every fd of the process is installed (FdKindOps::late_restore;
// an epoll watching another epoll after that one).
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// Every fdinfo line of a target is longer than 64 bytes, so no epoll fdinfo we accept lists more.
constexpr size_t kMaxEpollTargets = kMaxFdinfoSize / 64;
constexpr int kMaxFdNumber = 1 << 20;  // the kernel's default fs.nr_open
// Every event bit and input flag epoll_ctl() takes (uapi/linux/eventpoll.h, poll.h).
constexpr uint32_t kEpollEventBits = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDNORM |
                                     EPOLLRDBAND | EPOLLWRNORM | EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP |
                                     EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;

struct TfdLine {
    int tfd;
    uint32_t events;
    uint64_t data;
    uint64_t ino;
};

Expected<std::vector<TfdLine>> parse_epoll(const FdView& v) {
    if (v.fdinfo_truncated)
        return failf(E2BIG, "{}: epoll with more registered targets than {} bytes of fdinfo list", v.where(),
                     kMaxFdinfoSize);
    std::vector<TfdLine> out;
    std::string_view text = v.fdinfo;
    for (size_t at = 0; at < text.size();) {
        size_t eol = text.find('\n', at);
        std::string_view line = text.substr(at, eol == std::string_view::npos ? std::string_view::npos : eol - at);
        at = eol == std::string_view::npos ? text.size() : eol + 1;
        if (!line.starts_with("tfd:"))
            continue;
        auto tfd = parse_number<int>(fdinfo_token(line, "tfd"));
        auto ev = parse_number<uint32_t>(fdinfo_token(line, "events"), 16);
        auto data = parse_number<uint64_t>(fdinfo_token(line, "data"), 16);
        auto ino = parse_number<uint64_t>(fdinfo_token(line, "ino"), 16);
        if (!tfd || !ev || !data || !ino)
            return failf(EINVAL, "{}: cannot parse epoll fdinfo line \"{}\"", v.where(), line);
        out.push_back({*tfd, *ev, *data, *ino});
    }
    return out;
}

// 0 from kcmp(KCMP_EPOLL_TFD): fd `cand` of `pid` is the file of the toff-th entry registered
// as `tfd` in epoll `efd` of the same process.
Expected<bool> is_registered_file(pid_t pid, int efd, int tfd, uint32_t toff, int cand) {
    kcmp_epoll_slot slot{static_cast<uint32_t>(efd), static_cast<uint32_t>(tfd), toff};
    long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, cand, &slot);
    if (r < 0)
        return fail_errno("kcmp(KCMP_EPOLL_TFD, fd {}, epoll fd {} tfd {} toff {})", cand, efd, tfd, toff);
    return r == 0;
}

// The targets of the epoll `v`, each mapped to the fd of the process that is it now.
Expected<std::vector<images::EpollTarget>> resolve_targets(const FdView& v) {
    std::vector<TfdLine> lines = TRY(parse_epoll(v));
    std::vector<int> fds = TRY(list_target_fds(v.pid));
    std::set<int> open(fds.begin(), fds.end());
    std::map<int, uint64_t> ino_of;  // filled on demand: most targets are still at their tfd
    auto ino = [&](int fd) -> uint64_t {
        auto it = ino_of.find(fd);
        if (it != ino_of.end())
            return it->second;
        struct stat st;
        uint64_t n = stat(fmt::format("/proc/{}/fd/{}", v.pid, fd).c_str(), &st) == 0 ? st.st_ino : 0;
        return ino_of.emplace(fd, n).first->second;
    };
    std::map<int, uint32_t> toffs;  // entries seen so far per tfd, in fdinfo (= kcmp) order
    std::vector<images::EpollTarget> out;
    for (const auto& l : lines) {
        uint32_t toff = toffs[l.tfd]++;
        int found = -1;
        if (l.tfd != v.fd && open.contains(l.tfd) &&
            TRY_CTX(is_registered_file(v.pid, v.fd, l.tfd, toff, l.tfd), "{}", v.where()))
            found = l.tfd;
        for (auto it = fds.begin(); found < 0 && it != fds.end(); ++it) {
            if (*it == v.fd || *it == l.tfd || ino(*it) != l.ino)
                continue;
            if (TRY_CTX(is_registered_file(v.pid, v.fd, l.tfd, toff, *it), "{}", v.where()))
                found = *it;
        }
        if (found < 0)
            return failf(ENOTSUP,
                         "{}: epoll target registered as fd {} (inode {}) is no longer open in this process; an "
                         "epoll whose target lives only in another process or in flight cannot be restored",
                         v.where(), l.tfd, l.ino);
        images::EpollTarget t;
        t.set_tfd(l.tfd);
        t.set_fd(found);
        t.set_events(l.events);
        t.set_data(l.data);
        out.push_back(std::move(t));
    }
    return out;
}

Status precheck_epoll(const FdView& v, const Options&) {
    TRY(resolve_targets(v));
    return {};
}

Status dump_epoll(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    auto* ep = out.mutable_epoll();
    ep->set_flags(description_flags(v));
    ep->set_owner_pid(v.pid);
    for (auto& t : TRY(resolve_targets(v))) {
        if (t.tfd() != t.fd())
            c.log.debug("files", "{}: epoll target registered as fd {} is fd {} now", v.where(), t.tfd(), t.fd());
        *ep->add_targets() = std::move(t);
    }
    return {};
}

Status validate_epoll(const images::FileEntry& e) {
    if (!e.has_epoll())
        return fail(EINVAL, "epoll entry without EpollFile data");
    const auto& ep = e.epoll();
    TRY_VOID_CTX(validate_anon_flags(ep.flags(), O_RDWR), "epoll");
    if (ep.owner_pid() <= 0)
        return failf(EINVAL, "epoll owner pid {} is not a pid", ep.owner_pid());
    if (static_cast<size_t>(ep.targets_size()) > kMaxEpollTargets)
        return failf(E2BIG, "epoll with {} targets, more than the {} a dump can hold", ep.targets_size(),
                     kMaxEpollTargets);
    std::set<std::pair<int, int>> keys;
    for (const auto& t : ep.targets()) {
        if (t.fd() < 0 || t.fd() >= kMaxFdNumber || t.tfd() < 0 || t.tfd() >= kMaxFdNumber)
            return failf(EINVAL, "epoll target fd {} (registered as {}) is out of range [0, {})", t.fd(), t.tfd(),
                         kMaxFdNumber);
        if (t.events() & ~kEpollEventBits)
            return failf(EINVAL, "epoll target fd {}: events {:#x} have unknown bits {:#x}", t.fd(), t.events(),
                         t.events() & ~kEpollEventBits);
        // The kernel keys an entry by (file, registered number): the same pair twice is impossible.
        if (!keys.emplace(t.fd(), t.tfd()).second)
            return failf(EINVAL, "epoll target fd {} registered as {} appears twice", t.fd(), t.tfd());
    }
    return {};
}

Expected<UniqueFd> open_epoll(KindRestoreContext& c, const images::FileEntry& e) {
    UniqueFd fd(epoll_create1(EPOLL_CLOEXEC));
    if (!fd)
        return fail_errno("epoll_create1");
    TRY_VOID_CTX(set_status_flags(fd.get(), e.epoll().flags()), "epoll");
    return c.to_high(std::move(fd));
}

FdRefs refs_epoll(const images::FileEntry& e) {
    FdRefs r{e.epoll().owner_pid(), {}};
    for (const auto& t : e.epoll().targets())
        r.fds.push_back(t.fd());
    return r;
}

// Runs in the owner process with all its fds installed.
Status late_restore_epoll(KindRestoreContext& c, const images::FileEntry& e, int epfd) {
    for (const auto& t : e.epoll().targets()) {
        epoll_event ev{};
        ev.events = t.events();
        ev.data.u64 = t.data();
        // The kernel keys an entry by (file, number registered under). When that number is
        // free, register under it through a temporary dup: fdinfo shows the same tfd, and a
        // later EPOLL_CTL_ADD of the target's current number by the process succeeds as it
        // did before (a second entry) instead of failing with EEXIST.
        int use = t.fd();
        UniqueFd temp;
        if (t.tfd() != t.fd() && fcntl(t.tfd(), F_GETFD) < 0 && errno == EBADF &&
            dup3(t.fd(), t.tfd(), O_CLOEXEC) == t.tfd()) {
            temp.reset(t.tfd());
            use = t.tfd();
        }
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, use, &ev) != 0)
            return fail_errno("epoll_ctl(ADD) of fd {} (registered as fd {}) with events {:#x}", t.fd(), t.tfd(),
                              t.events());
        if (use != t.tfd())
            c.log->info("files", "epoll target registered as fd {} is registered as fd {} now: fd {} is taken",
                        t.tfd(), t.fd(), t.tfd());
    }
    return {};
}

}  // namespace

const FdKindOps kEpollKind{
    .name = "epoll",
    .kind = images::FD_EPOLL,
    .match = [](const FdView& v) { return v.link == "anon_inode:[eventpoll]"; },
    .precheck = precheck_epoll,
    .dump = dump_epoll,
    .validate = validate_epoll,
    .open = open_epoll,
    .refs = refs_epoll,
    .late_restore = late_restore_epoll,
};

}  // namespace criu
