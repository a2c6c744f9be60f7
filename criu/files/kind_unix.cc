// Unix sockets: stream, datagram and seqpacket; socketpairs, bound (path and abstract names),
// listening, connected and accepted sockets, queued data and queued connections, shutdown.
//
// Dump: the socket's kernel-side relations come from sock_diag (peer inode, the embryos queued
// in a listener, the socket file's inode; KERNEL-NOTES section 6), the receive queue is copied
// without consuming it (SO_PEEK_OFF=0, then MSG_PEEK until EAGAIN, on the stolen fd), and
// FilesDumper::finish checks that every peer is in the dump and groups the sockets that must be
// created together (a pair, a listener and the clients queued in it).
// Restore: the whole group is created when its first member is opened: listeners and named
// sockets first, then pairs (socketpair(), so connected ends get no name back: an accepted
// socket's getsockname() reads unnamed after restore), then clients connected into listeners
// in their queue order, then queues written back from the peer, then shutdown.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/sockets.h"

namespace criu {
namespace {

constexpr int kStateConnected = 1;   // TCP_ESTABLISHED
constexpr int kStateUnconnected = 7; // TCP_CLOSE
constexpr int kStateListen = 10;     // TCP_LISTEN
constexpr size_t kMaxQueueBytes = 64u << 20;
constexpr size_t kMaxPackets = 1u << 16;
constexpr uint32_t kMaxBacklog = 1u << 20;

std::string sk_name(const images::UnixSocket& u) {
    return fmt::format("unix socket ino {}", u.ino());
}

std::string printable(const std::string& name) {
    if (!name.empty() && name[0] == '\0')
        return "@" + name.substr(1);
    return name;
}

// ---------------------------------------------------------------- dump half

Status precheck_unix(const FdView& v, const Options&) {
    // fdinfo "scm_fds": file descriptors sent over SCM_RIGHTS and still in this queue.
    if (auto n = parse_number<uint32_t>(fdinfo_field(v.fdinfo, "scm_fds")); n && *n > 0)
        return failf(ENOTSUP, "{}: unix socket has {} file descriptor(s) in flight (SCM_RIGHTS not received yet) "
                              "(not supported)", v.where(), *n);
    return {};
}

// The receive queue, without taking it away from the process: SO_PEEK_OFF makes each
// MSG_PEEK continue where the last one ended.
Status peek_queue(const FdView& v, int type, images::UnixSocket& u) {
    int fd = v.stolen.get();
    int old_off = -1;
    socklen_t len = sizeof old_off;
    if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old_off, &len) != 0)
        return fail_errno("{}: SO_PEEK_OFF", v.where());
    u.set_peek_off(old_off);
    int zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) != 0)
        return fail_errno("{}: setting SO_PEEK_OFF", v.where());
    std::vector<char> buf(4u << 20);
    std::string stream;
    size_t total = 0;
    Status st;
    for (;;) {
        iovec iov{buf.data(), buf.size()};
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 253)];
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        ssize_t n = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0) {
            st = fail_errno("{}: peeking at the queued data", v.where());
            break;
        }
        // Descriptors riding along were refused in precheck; never keep a copy of one here.
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
                    int got;
                    std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
                    close(got);
                }
        if (m.msg_flags & MSG_TRUNC) {
            st = failf(ENOTSUP, "{}: a queued datagram is larger than {} bytes", v.where(), buf.size());
            break;
        }
        if (n == 0) {
            if (type == SOCK_STREAM)
                break;  // end of file: the peer is gone and everything was peeked
            // A seqpacket whose receive side is shut down (shutdown(SHUT_RD), or its peer closed:
            // the kernel then shuts the survivor down both ways) reads 0 once its queue is
            // empty, like a stream at EOF. Only with the receive side open does 0 mean a
            // zero-length datagram, which the peek offset cannot step over.
            if (u.shutdown() & 1)
                break;
            st = failf(ENOTSUP, "{}: a zero-length datagram is queued (not supported)", v.where());
            break;
        }
        total += static_cast<size_t>(n);
        if (total > kMaxQueueBytes || u.queue_size() >= static_cast<int>(kMaxPackets)) {
            st = failf(ENOTSUP, "{}: more than {} bytes or {} packets queued", v.where(), kMaxQueueBytes, kMaxPackets);
            break;
        }
        if (type == SOCK_STREAM)
            stream.append(buf.data(), static_cast<size_t>(n));
        else
            u.add_queue(std::string(buf.data(), static_cast<size_t>(n)));
    }
    // Put the process's own peek offset back, whatever happened above.
    if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old_off, sizeof old_off) != 0 && st)
        st = fail_errno("{}: restoring SO_PEEK_OFF {}", v.where(), old_off);
    if (st && !stream.empty())
        u.add_queue(std::move(stream));
    return st;
}

// The socket file of a path name, as the process sees it: relative names are resolved in its
// cwd, absolute ones in its root.
Status dump_name(const FdView& v, const UnixDiag& d, images::UnixSocket& u) {
    std::string name = d.name;
    // The kernel keeps a path name with its terminating NUL (unix_mkname_bsd()).
    if (!name.empty() && name[0] != '\0')
        name = name.substr(0, name.find('\0'));
    u.set_name(name);
    if (name.empty() || name[0] == '\0')
        return {};
    std::string via;
    if (name[0] == '/') {
        via = fmt::format("/proc/{}/root{}", v.pid, name);
    } else {
        char cwd[PATH_MAX];
        ssize_t n = readlink(fmt::format("/proc/{}/cwd", v.pid).c_str(), cwd, sizeof cwd - 1);
        if (n < 0)
            return fail_errno("{}: reading the cwd the relative name {} was bound in", v.where(), name);
        u.set_bind_dir(std::string(cwd, static_cast<size_t>(n)));
        via = fmt::format("/proc/{}/cwd/{}", v.pid, name);
    }
    struct stat st{};
    // The file at that path must be this socket's own (same inode), else the name is only a
    // name now: it was unlinked (or the cwd changed since a relative bind).
    if (lstat(via.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || !d.has_vfs || st.st_ino != d.vfs_ino) {
        u.set_name_unlinked(true);
        return {};
    }
    u.set_file_mode(st.st_mode & 07777);
    u.set_file_uid(st.st_uid);
    u.set_file_gid(st.st_gid);
    return {};
}

Status dump_unix(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    TRY_VOID(precheck_unix(v, c.opts));
    const UnixDiag* d = TRY_CTX(c.sockets.unix_info(static_cast<uint32_t>(v.st.st_ino)), "{}", v.where());
    auto* u = out.mutable_unix_sk();
    u->set_ino(v.st.st_ino);
    u->set_type(d->type);
    u->set_state(d->state);
    u->set_flags(description_flags(v));
    u->set_shutdown(d->shutdown);
    u->set_peek_off(-1);
    if (d->type != SOCK_STREAM && d->type != SOCK_DGRAM && d->type != SOCK_SEQPACKET)
        return failf(ENOTSUP, "{}: unix socket of type {} (not supported)", v.where(), d->type);
    if (d->state != kStateConnected && d->state != kStateUnconnected && d->state != kStateListen)
        return failf(ENOTSUP, "{}: unix socket in state {} (not supported)", v.where(), d->state);
    TRY_VOID(dump_name(v, *d, *u));
    int on = 0;
    socklen_t len = sizeof on;
    if (getsockopt(v.stolen.get(), SOL_SOCKET, SO_PASSCRED, &on, &len) != 0)
        return fail_errno("{}: SO_PASSCRED", v.where());
    u->set_passcred(on != 0);

    if (d->state == kStateListen) {
        u->set_backlog(d->wqueue);
        for (uint32_t i : d->icons)
            u->add_icons(i);
    } else {
        u->set_peer_ino(d->peer);
        // A stream end whose peer was closed keeps its state and the data sent before.
        if (d->peer == 0 && d->state == kStateConnected && d->type != SOCK_DGRAM)
            u->set_peer_closed(true);
        if (d->peer != 0 && d->type == SOCK_DGRAM) {
            // Kept in case the peer is outside the dump and --ext-unix-sk lets it stay there.
            sockaddr_un a{};
            socklen_t alen = sizeof a;
            if (getpeername(v.stolen.get(), reinterpret_cast<sockaddr*>(&a), &alen) == 0 &&
                alen > offsetof(sockaddr_un, sun_path))
                u->set_ext_peer_name(std::string(a.sun_path, alen - offsetof(sockaddr_un, sun_path)));
        }
        if (d->rqueue > 0 || d->type != SOCK_STREAM)
            TRY_VOID(peek_queue(v, d->type, *u));
    }
    c.sockets.unix_dumped(v.st.st_ino, {v.pid, v.fd, d->wqueue});
    c.log.debug("files", "{}: unix socket ino {} type {} state {} name \"{}\" peer {} queue {} packet(s)", v.where(),
                u->ino(), u->type(), u->state(), printable(u->name()), u->peer_ino(), u->queue_size());
    return {};
}

// ---------------------------------------------------------------- validation

Status validate_name(const std::string& name, const char* what) {
    if (name.size() > sizeof(sockaddr_un::sun_path))
        return failf(EINVAL, "{} of {} bytes is longer than sun_path", what, name.size());
    if (!name.empty() && name[0] != '\0' && name.find('\0') != std::string::npos)
        return failf(EINVAL, "{} \"{}\" contains a NUL byte", what, name.substr(0, name.find('\0')));
    return {};
}

Status validate_unix(const images::FileEntry& e) {
    if (!e.has_unix_sk())
        return fail(EINVAL, "unix socket entry without UnixSocket data");
    const auto& u = e.unix_sk();
    std::string n = sk_name(u);
    if (u.ino() == 0)
        return fail(EINVAL, "unix socket with inode 0");
    if (u.type() != SOCK_STREAM && u.type() != SOCK_DGRAM && u.type() != SOCK_SEQPACKET)
        return failf(EINVAL, "{}: type {} is not a unix socket type", n, u.type());
    if (u.state() != kStateConnected && u.state() != kStateUnconnected && u.state() != kStateListen)
        return failf(EINVAL, "{}: state {} is not one this criu writes", n, u.state());
    TRY_VOID_CTX(validate_anon_flags(u.flags(), O_RDWR), "{}", n);
    TRY_VOID_CTX(validate_name(u.name(), "name"), "{}", n);
    TRY_VOID_CTX(validate_name(u.ext_peer_name(), "external peer name"), "{}", n);
    if (!u.bind_dir().empty())
        TRY_VOID_CTX(validate_path(u.bind_dir()), "{}: bind directory", n);
    if (u.shutdown() & ~3u)
        return failf(EINVAL, "{}: shutdown bits {:#x}", n, u.shutdown());
    if (u.file_mode() & ~07777u)
        return failf(EINVAL, "{}: file mode {:o}", n, u.file_mode());
    if (u.state() == kStateListen) {
        if (u.type() == SOCK_DGRAM)
            return failf(EINVAL, "{}: a datagram socket cannot listen", n);
        if (u.backlog() > kMaxBacklog || static_cast<size_t>(u.icons_size()) > kMaxBacklog)
            return failf(EINVAL, "{}: backlog {} with {} queued connections", n, u.backlog(), u.icons_size());
        if (u.peer_ino() || u.queue_size())
            return failf(EINVAL, "{}: a listening socket with a peer or queued data", n);
    } else if (u.icons_size()) {
        return failf(EINVAL, "{}: queued connections on a socket that does not listen", n);
    }
    if (u.peer_ino() == u.ino())
        return failf(EINVAL, "{}: is its own peer", n);
    if (u.listener_ino() && (u.peer_ino() || u.peer_closed() || u.state() != kStateConnected))
        return failf(EINVAL, "{}: queued in a listener, but with a peer or not connected", n);
    if (u.peer_closed() && (u.peer_ino() || u.type() == SOCK_DGRAM))
        return failf(EINVAL, "{}: peer_closed with a peer or on a datagram socket", n);
    size_t total = 0;
    for (const auto& q : u.queue())
        total += q.size();
    if (total > kMaxQueueBytes || static_cast<size_t>(u.queue_size()) > kMaxPackets)
        return failf(EINVAL, "{}: {} bytes in {} queued packets is above the limit", n, total, u.queue_size());
    if (u.type() == SOCK_STREAM && u.queue_size() > 1)
        return failf(EINVAL, "{}: a stream queue in {} pieces", n, u.queue_size());
    if (u.peek_off() < -1)
        return failf(EINVAL, "{}: SO_PEEK_OFF {}", n, u.peek_off());
    return {};
}

std::string group_unix(const images::FileEntry& e) {
    const auto& u = e.unix_sk();
    return fmt::format("unix:{}", u.group_ino() ? u.group_ino() : u.ino());
}

// ---------------------------------------------------------------- restore half

// Runs `f` with the working directory `dir` (for relative socket names), then goes back.
template <class F>
Status in_dir(const std::string& dir, F&& f) {
    if (dir.empty())
        return f();
    UniqueFd here(open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!here)
        return fail_errno("open of the current directory");
    if (chdir(dir.c_str()) != 0)
        return fail_errno("chdir {}", dir);
    Status st = f();
    if (fchdir(here.get()) != 0 && st)
        return fail_errno("fchdir back");
    return st;
}

std::pair<sockaddr_un, socklen_t> address(const std::string& name) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    return {a, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())};
}

Status bind_name(int fd, const images::UnixSocket& u) {
    const std::string& name = u.name();
    if (name.empty())
        return {};
    return in_dir(u.bind_dir(), [&]() -> Status {
        auto [a, alen] = address(name);
        if (name[0] != '\0') {
            // A socket file left behind by the dumped process (or an earlier restore) is stale;
            // anything else at that path belongs to someone else.
            struct stat st{};
            if (lstat(name.c_str(), &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                    return failf(EEXIST, "cannot bind {}: the path exists and is not a socket", name);
                if (unlink(name.c_str()) != 0)
                    return fail_errno("unlinking the stale socket file {}", name);
            }
        }
        if (bind(fd, reinterpret_cast<sockaddr*>(&a), alen) != 0)
            return fail_errno("bind to {}", printable(name));
        // A name unlinked at dump time is unlinked again once the group is built (clients may
        // still have to connect to it).
        if (name[0] == '\0' || u.name_unlinked())
            return {};
        if (chmod(name.c_str(), u.file_mode()) != 0 || lchown(name.c_str(), u.file_uid(), u.file_gid()) != 0)
            return fail_errno("setting mode {:o} and owner {}:{} of {}", u.file_mode(), u.file_uid(), u.file_gid(), name);
        return {};
    });
}

Status connect_to(int fd, const std::string& name, const std::string& dir, bool nonblock_ok) {
    return in_dir(dir, [&]() -> Status {
        auto [a, alen] = address(name);
        if (connect(fd, reinterpret_cast<sockaddr*>(&a), alen) != 0 && !(nonblock_ok && errno == EINPROGRESS))
            return fail_errno("connect to {}", printable(name));
        return {};
    });
}

Status send_all(int fd, const std::string& data, const std::string& to_name, const std::string& dir) {
    return in_dir(dir, [&]() -> Status {
        auto [a, alen] = address(to_name);
        size_t done = 0;
        do {
            ssize_t n = to_name.empty() ? send(fd, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL)
                                        : sendto(fd, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL,
                                                 reinterpret_cast<sockaddr*>(&a), alen);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return fail_errno("writing back {} queued bytes ({} written)", data.size(), done);
            done += static_cast<size_t>(n);
        } while (done < data.size());
        return {};
    });
}

class UnixGroupBuilder {
public:
    UnixGroupBuilder(KindRestoreContext& c, uint64_t group) : c_(c) {
        for (const auto& [id, e] : *c.files)
            if (e.has_unix_sk() && (e.unix_sk().group_ino() ? e.unix_sk().group_ino() : e.unix_sk().ino()) == group)
                members_[e.unix_sk().ino()] = &e.unix_sk();
    }

    Status build() {
        // 1. Listeners and named sockets that are not a connected end.
        for (auto& [ino, u] : members_)
            if (u->state() == kStateListen || (!u->name().empty() && u->type() != SOCK_DGRAM &&
                                                u->state() != kStateConnected) ||
                (!u->name().empty() && u->type() == SOCK_DGRAM && !mutual(*u)))
                TRY_VOID_CTX(create_plain(*u), "{}", sk_name(*u));
        // 2. Pairs (both ends in the dump) and ends whose peer was closed.
        for (auto& [ino, u] : members_) {
            if (fds_.contains(ino))
                continue;
            if (mutual(*u))
                TRY_VOID_CTX(create_pair(*u, peer_of(*u)), "{}", sk_name(*u));
            else if (u->peer_closed())
                TRY_VOID_CTX(create_pair(*u, nullptr), "{}", sk_name(*u));
        }
        // 3. Clients queued in a listener, in its queue order.
        for (auto& [ino, u] : members_) {
            if (u->state() != kStateListen)
                continue;
            for (uint64_t cino : u->icons())
                if (auto m = members_.find(cino); m != members_.end() && m->second->listener_ino() == ino &&
                                                  !fds_.contains(cino)) {
                        const images::UnixSocket* cl = m->second;
                        UniqueFd fd = TRY_CTX(new_socket(*cl), "{}", sk_name(*cl));
                        TRY_VOID_CTX(bind_name(fd.get(), *cl), "{}", sk_name(*cl));
                        TRY_VOID_CTX(connect_to(fd.get(), u->name(), u->bind_dir(), true),
                                     "{}: queueing its connection in {}", sk_name(*cl), sk_name(*u));
                        fds_[cino] = std::move(fd);
                    }
        }
        // 4. The rest: unconnected sockets and the senders of one-way datagram connections,
        //    connected once every named socket exists.
        for (auto& [ino, u] : members_) {
            if (fds_.contains(ino))
                continue;
            if (u->listener_ino() || (u->peer_ino() && !peer_of(*u)))
                return failf(EINVAL, "{}: its peer {} is not in this image set", sk_name(*u), u->peer_ino());
            UniqueFd fd = TRY_CTX(new_socket(*u), "{}", sk_name(*u));
            TRY_VOID_CTX(bind_name(fd.get(), *u), "{}", sk_name(*u));
            fds_[ino] = std::move(fd);
        }
        for (auto& [ino, u] : members_) {
            const images::UnixSocket* p = peer_of(*u);
            if (p && p->peer_ino() != ino) {
                if (p->name().empty())
                    return failf(EINVAL, "{}: connected to {}, which has no name to connect to", sk_name(*u),
                                 sk_name(*p));
                TRY_VOID_CTX(connect_to(fds_.at(ino).get(), p->name(), p->bind_dir(), false), "{}", sk_name(*u));
            } else if (!u->ext_peer_name().empty() && u->peer_ino() == 0 && u->state() == kStateConnected) {
                TRY_VOID_CTX(connect_to(fds_.at(ino).get(), u->ext_peer_name(), {}, false), "{} (--ext-unix-sk)",
                             sk_name(*u));
            }
        }
        // 5. Options, queued data (written by the peer), shutdown, peek offset.
        for (auto& [ino, u] : members_)
            TRY_VOID_CTX(finish(*u), "{}", sk_name(*u));
        for (auto& [ino, u] : members_)
            if (u->shutdown())
                if (shutdown(fds_.at(ino).get(), u->shutdown() == 3 ? SHUT_RDWR : u->shutdown() == 1 ? SHUT_RD : SHUT_WR) != 0)
                    return fail_errno("{}: shutdown {}", sk_name(*u), u->shutdown());
        for (auto& [ino, fd] : fds_)
            c_.sockets[ino] = TRY(c_.to_high(std::move(fd)));
        return {};
    }

private:
    bool mutual(const images::UnixSocket& u) const {
        const images::UnixSocket* p = peer_of(u);
        return p && p->peer_ino() == u.ino();
    }

    const images::UnixSocket* peer_of(const images::UnixSocket& u) const {
        if (u.listener_ino() || !u.peer_ino())
            return nullptr;
        auto it = members_.find(u.peer_ino());
        return it == members_.end() ? nullptr : it->second;
    }

    Expected<UniqueFd> new_socket(const images::UnixSocket& u) {
        UniqueFd fd(socket(AF_UNIX, u.type() | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd)
            return fail_errno("socket(AF_UNIX, {})", u.type());
        return fd;
    }

    Status create_plain(const images::UnixSocket& u) {
        UniqueFd fd = TRY(new_socket(u));
        TRY_VOID(bind_name(fd.get(), u));
        if (u.state() == kStateListen && listen(fd.get(), static_cast<int>(u.backlog())) != 0)
            return fail_errno("listen with backlog {}", u.backlog());
        fds_[u.ino()] = std::move(fd);
        return {};
    }

    Status create_pair(const images::UnixSocket& u, const images::UnixSocket* p) {
        int sv[2];
        if (socketpair(AF_UNIX, u.type() | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
            return fail_errno("socketpair({})", u.type());
        UniqueFd a(sv[0]), b(sv[1]);
        // Datagram ends keep their names (a bound datagram socket may be connected); a stream
        // end's name is its listener's, which is taken.
        if (u.type() == SOCK_DGRAM) {
            TRY_VOID(bind_name(a.get(), u));
            if (p)
                TRY_VOID(bind_name(b.get(), *p));
        }
        fds_[u.ino()] = std::move(a);
        if (p)
            fds_[p->ino()] = std::move(b);
        else
            closed_peer_[u.ino()] = std::move(b);
        return {};
    }

    Status finish(const images::UnixSocket& u) {
        int fd = fds_.at(u.ino()).get();
        int on = u.passcred();
        if (on && setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
            return fail_errno("SO_PASSCRED");
        if (u.queue_size()) {
            // Who can put data into this socket's queue: its peer, the temporary end standing
            // for a closed peer, or (a named datagram socket) anyone sending to its name.
            int writer = -1;
            std::string to;
            UniqueFd tmp;
            if (auto it = closed_peer_.find(u.ino()); it != closed_peer_.end()) {
                writer = it->second.get();
            } else if (mutual(u)) {
                writer = fds_.at(u.peer_ino()).get();
            } else if (u.type() == SOCK_DGRAM && !u.name().empty() && !u.peer_ino()) {
                tmp.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
                if (!tmp)
                    return fail_errno("socket for writing back queued datagrams");
                writer = tmp.get();
                to = u.name();
            } else {
                return failf(ENOTSUP, "{} queued packet(s) and no peer that could have sent them", u.queue_size());
            }
            for (const auto& q : u.queue())
                TRY_VOID(send_all(writer, q, to, to.empty() ? std::string() : u.bind_dir()));
        }
        closed_peer_.erase(u.ino());
        if (u.name_unlinked() && !u.name().empty() && u.name()[0] != '\0') {
            Status st = in_dir(u.bind_dir(), [&]() -> Status {
                if (unlink(u.name().c_str()) != 0)
                    return fail_errno("unlinking {} (it was unlinked at dump time)", u.name());
                return {};
            });
            TRY_VOID(st);
        }
        if (u.peek_off() >= 0) {
            int off = u.peek_off();
            if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0)
                return fail_errno("SO_PEEK_OFF {}", off);
        }
        return {};
    }

    KindRestoreContext& c_;
    std::map<uint64_t, const images::UnixSocket*> members_;
    std::map<uint64_t, UniqueFd> fds_;
    std::map<uint64_t, UniqueFd> closed_peer_;
};

Expected<UniqueFd> open_unix(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& u = e.unix_sk();
    if (!c.sockets.contains(u.ino())) {
        if (!c.files)
            return fail(EINVAL, "no file table to find the socket's peers in");
        uint64_t group = u.group_ino() ? u.group_ino() : u.ino();
        UnixGroupBuilder b(c, group);
        TRY_VOID(b.build());
    }
    auto it = c.sockets.find(u.ino());
    if (it == c.sockets.end())
        return failf(EINVAL, "{}: not created with its group {}", sk_name(u), u.group_ino());
    UniqueFd fd = std::move(it->second);
    c.sockets.erase(it);
    TRY_VOID_CTX(set_status_flags(fd.get(), u.flags()), "{}", sk_name(u));
    return fd;
}

bool is_unix(const FdView& v) {
    if (!S_ISSOCK(v.st.st_mode))
        return false;
    int domain = -1;
    socklen_t len = sizeof domain;
    return getsockopt(v.stolen.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX;
}

}  // namespace

// ---------------------------------------------------------------- SocketDumpState (unix part)

Expected<const UnixDiag*> SocketDumpState::unix_info(uint32_t ino) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!unix_diag_ || attempt == 1)
            unix_diag_ = TRY(collect_unix_diag());
        if (auto it = unix_diag_->find(ino); it != unix_diag_->end())
            return &it->second;
    }
    return failf(ENOENT, "unix socket inode {} is not in sock_diag (a socket of another network namespace?)", ino);
}

Status SocketDumpState::finish_unix(std::vector<images::FileEntry>& files, bool ext_unix_sk, Log& log) {
    std::map<uint64_t, images::UnixSocket*> by_ino;
    for (auto& e : files)
        if (e.has_unix_sk())
            by_ino[e.unix_sk().ino()] = e.mutable_unix_sk();
    // sock_diag names a queued connection by its client's inode (the embryo has none); the
    // client itself reports no peer.
    std::map<uint64_t, uint64_t> client_listener;
    for (auto& [ino, u] : by_ino)
        for (uint64_t i : u->icons())
            client_listener[i] = ino;
    // Union-find over "must be created together".
    std::map<uint64_t, uint64_t> parent;
    auto find = [&](uint64_t x) {
        while (parent.contains(x) && parent[x] != x)
            x = parent[x];
        return x;
    };
    auto unite = [&](uint64_t a, uint64_t b) {
        a = find(a), b = find(b);
        if (a != b)
            parent[std::max(a, b)] = std::min(a, b);
    };
    std::vector<std::string> problems;
    for (auto& [ino, u] : by_ino) {
        parent.try_emplace(ino, ino);
        const UnixSeen& seen = unix_seen_.at(ino);
        std::string where = fmt::format("pid {} fd {}", seen.pid, seen.fd);
        if (auto l = client_listener.find(ino); l != client_listener.end() && u->peer_ino() == 0) {
            if (seen.wqueue)
                problems.push_back(fmt::format("{}: unix socket sent {} bytes on a connection that was not "
                                               "accepted yet (not supported)", where, seen.wqueue));
            u->set_listener_ino(l->second);
            u->set_peer_closed(false);
            unite(ino, l->second);
        } else if (uint64_t p = u->peer_ino()) {
            if (by_ino.contains(p)) {
                unite(ino, p);
            } else if (ext_unix_sk && u->type() == SOCK_DGRAM && !u->ext_peer_name().empty()) {
                log.info("files", "{}: datagram socket connected to {} outside the dump: reconnected by name on "
                                  "restore (--ext-unix-sk)", where, printable(u->ext_peer_name()));
                u->set_peer_ino(0);
            } else {
                problems.push_back(fmt::format(
                    "{}: unix socket (inode {}) is connected to socket inode {}, which no dumped process holds{}", where,
                    ino, p,
                    u->type() == SOCK_DGRAM ? (ext_unix_sk ? " and which has no name to reconnect to"
                                                           : " (--ext-unix-sk reconnects datagram sockets by name)")
                                            : (ext_unix_sk ? " (--ext-unix-sk covers datagram sockets only)" : "")));
            }
        }
        if (u->type() != SOCK_DGRAM || u->peer_ino() == 0)
            u->clear_ext_peer_name();
    }
    // Every queued connection needs its client in the dump.
    for (auto& [ino, u] : by_ino) {
        int kept = 0;
        std::vector<uint64_t> icons(u->icons().begin(), u->icons().end());
        for (uint64_t i : icons) {
            if (by_ino.contains(i)) {
                u->set_icons(kept++, i);
            } else if (ext_unix_sk) {
                log.warn("files", "unix socket inode {}: a queued connection from outside the dump is dropped "
                                  "(--ext-unix-sk)", ino);
            } else {
                const UnixSeen& seen = unix_seen_.at(ino);
                problems.push_back(fmt::format("pid {} fd {}: listening unix socket {} has a queued connection from "
                                               "a socket no dumped process holds (--ext-unix-sk drops it)",
                                               seen.pid, seen.fd, printable(u->name())));
            }
        }
        u->mutable_icons()->Truncate(kept);
    }
    for (auto& [ino, u] : by_ino) {
        // Queued data needs someone to write it back on restore.
        bool mutual = u->peer_ino() && by_ino.contains(u->peer_ino()) && by_ino.at(u->peer_ino())->peer_ino() == ino;
        bool named_dgram = u->type() == SOCK_DGRAM && !u->name().empty() && !u->peer_ino();
        if (u->queue_size() && !mutual && !u->peer_closed() && !named_dgram) {
            const UnixSeen& seen = unix_seen_.at(ino);
            problems.push_back(fmt::format("pid {} fd {}: unix socket has {} queued packet(s) whose sender cannot be "
                                           "recreated (not supported)", seen.pid, seen.fd, u->queue_size()));
        }
        u->set_group_ino(find(ino));
    }
    if (!problems.empty())
        return failf(ENOTSUP, "{}", fmt::join(problems, "; "));
    return {};
}

const FdKindOps kUnixKind{
    .name = "unix socket",
    .kind = images::FD_UNIX_SK,
    .match = is_unix,
    .precheck = precheck_unix,
    .dump = dump_unix,
    .validate = validate_unix,
    .group = group_unix,
    .open = open_unix,
};

}  // namespace criu
