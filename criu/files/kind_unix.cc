// Unix sockets: stream, datagram and seqpacket; socketpairs, bound (path and abstract names),
// listening, connected and accepted sockets, queued data and queued connections, shutdown.
//
// Dump: the socket's kernel-side relations come from sock_diag (peer inode, the embryos queued
// in a listener, the socket file's inode; KERNEL-NOTES section 6), the receive queue is copied
// without consuming it (SO_PEEK_OFF=0, then MSG_PEEK until EAGAIN, on the stolen fd), and
// FilesDumper::finish checks that every peer is in the dump and groups the sockets that must be
// created together (a pair, a listener and the clients queued in it).
// Restore (unix_group_builder.cc): the whole group is created when its first member is opened.
//
// Names that a socket shows but does not hold are recorded too: an accepted socket's name is its
// listener's (`accepted`), a queued datagram's sender name (`queue_sender`), and the name of a
// closed peer (`closed_peer_name`), so that getsockname(), getpeername() and recvfrom() read
// after restore what they read before.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/sockets.h"
#include "criu/files/unix_group_builder.h"

namespace criu {
namespace {

using namespace unix_sk;

constexpr size_t kMaxQueueBytes = 64u << 20;
constexpr size_t kMaxPackets = 1u << 16;
constexpr uint32_t kMaxBacklog = 1u << 20;

// ---------------------------------------------------------------- dump half

Status precheck_unix(const FdView& v, const Options&) {
    // fdinfo "scm_fds": file descriptors sent over SCM_RIGHTS and still in this queue.
    if (auto n = parse_number<uint32_t>(fdinfo_field(v.fdinfo, "scm_fds")); n && *n > 0)
        return failf(ENOTSUP, "{}: unix socket has {} file descriptor(s) in flight (SCM_RIGHTS not received yet) "
                              "(not supported)", v.where(), *n);
    return {};
}

// The name in an address the kernel filled in: abstract names keep every byte, path names end
// at their NUL (the kernel keeps it, unix_mkname_bsd()).
std::string sockaddr_name(const sockaddr_un& a, socklen_t len) {
    if (len <= offsetof(sockaddr_un, sun_path))
        return {};
    std::string name(a.sun_path, std::min<size_t>(len - offsetof(sockaddr_un, sun_path), sizeof a.sun_path));
    if (!name.empty() && name[0] != '\0')
        name = name.substr(0, name.find('\0'));
    return name;
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
        sockaddr_un from{};
        m.msg_name = &from;
        m.msg_namelen = sizeof from;
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
        if (type == SOCK_STREAM) {
            stream.append(buf.data(), static_cast<size_t>(n));
        } else {
            u.add_queue(std::string(buf.data(), static_cast<size_t>(n)));
            // The sender's name as recvfrom() shows it (its name now, af_unix.c
            // unix_copy_addr()); an unnamed sender gives no address at all.
            if (type == SOCK_DGRAM)
                u.add_queue_sender(sockaddr_name(from, m.msg_namelen));
        }
    }
    // Put the process's own peek offset back, whatever happened above.
    if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old_off, sizeof old_off) != 0 && st)
        st = fail_errno("{}: restoring SO_PEEK_OFF {}", v.where(), old_off);
    if (st && !stream.empty())
        u.add_queue(std::move(stream));
    return st;
}

// The name sock_diag gives, as the dump records it.
std::string diag_name(const UnixDiag& d) {
    std::string name = d.name;
    // The kernel keeps a path name with its terminating NUL (unix_mkname_bsd()).
    if (!name.empty() && name[0] != '\0')
        name = name.substr(0, name.find('\0'));
    return name;
}

// Another socket showing `d`'s name, as sockets made by accept() from one listener do: the
// listener itself (its inode) or, with the listener gone, another accepted socket (0). The
// kernel keeps one bound socket per name (per type for abstract names; per inode for paths,
// which sock_diag gives as UNIX_DIAG_VFS), so a second socket with the name shares it.
std::optional<uint32_t> namesake(const UnixDiag& d, const std::map<uint32_t, UnixDiag>& all) {
    if (!d.has_name || d.name.empty())
        return std::nullopt;
    auto same = [&](const UnixDiag& o) {
        if (o.ino == d.ino || o.type != d.type || !o.has_name || o.name != d.name)
            return false;
        return d.name[0] == '\0' || (d.has_vfs && o.has_vfs && o.vfs_ino == d.vfs_ino && o.vfs_dev == d.vfs_dev);
    };
    std::optional<uint32_t> found;
    for (const auto& [ino, o] : all)
        if (same(o)) {
            if (o.state == kStateListen)
                return ino;
            if (o.state == kStateConnected)
                found = 0;
        }
    return found;
}

// Whether the connected stream/seqpacket socket `d` was made by accept(), and its listener's
// inode when that is still there (else 0). Its name is then shared with the listener, not
// bound by itself. A named end that shares its name with nobody is accepted if its peer is
// unnamed (a socketpair end bound later reads the same, and loses only the hold on its name);
// if both ends are named, which one was accepted changes nothing that getsockname() and
// getpeername() show, and the later-made socket (the accepted one, made at accept()) is taken.
std::pair<bool, uint32_t> accepted_from(const UnixDiag& d, const std::string& closed_peer_name,
                                        const std::map<uint32_t, UnixDiag>& all) {
    if (!d.has_name || d.name.empty() || d.type == SOCK_DGRAM || d.state != kStateConnected)
        return {false, 0};
    if (auto l = namesake(d, all))
        return {true, *l};
    if (d.peer == 0)
        return {closed_peer_name.empty(), 0};
    auto p = all.find(d.peer);
    if (p == all.end() || !p->second.has_name || p->second.name.empty())
        return {true, 0};
    if (namesake(p->second, all))
        return {false, 0};
    return {d.ino > d.peer, 0};
}

// The socket file of a path name, as the process sees it: relative names are resolved in its
// cwd, absolute ones in its root.
Status dump_name(const FdView& v, const UnixDiag& d, images::UnixSocket& u) {
    std::string name = diag_name(d);
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

    if (d->peer == 0 && d->state == kStateConnected && d->type != SOCK_DGRAM) {
        // A closed peer's name still shows in getpeername() (the kernel keeps the dead peer).
        sockaddr_un a{};
        socklen_t alen = sizeof a;
        if (getpeername(v.stolen.get(), reinterpret_cast<sockaddr*>(&a), &alen) == 0)
            u->set_closed_peer_name(sockaddr_name(a, alen));
    }
    if (const auto* all = c.sockets.unix_all()) {
        auto [accepted, listener] = accepted_from(*d, u->closed_peer_name(), *all);
        u->set_accepted(accepted);
        u->set_accept_listener_ino(listener);
        // A client whose accepted end was closed: the listener that end came from, if it is
        // still there, gives the name back.
        if (!accepted && d->peer == 0 && !u->closed_peer_name().empty())
            for (const auto& [ino, o] : *all)
                if (o.state == kStateListen && o.type == d->type && o.has_name &&
                    diag_name(o) == u->closed_peer_name())
                    u->set_accept_listener_ino(ino);
    }
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
            // Path names without the NUL the kernel keeps (a NUL inside a path name is refused
            // on restore).
            if (getpeername(v.stolen.get(), reinterpret_cast<sockaddr*>(&a), &alen) == 0)
                u->set_ext_peer_name(sockaddr_name(a, alen));
        }
        if (d->rqueue > 0 || d->type != SOCK_STREAM)
            TRY_VOID(peek_queue(v, d->type, *u));
    }
    if (!u->peer_closed())
        u->clear_closed_peer_name();
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
    if (u.queue_sender_size()) {
        if (u.type() != SOCK_DGRAM || u.queue_sender_size() != u.queue_size())
            return failf(EINVAL, "{}: {} sender names for {} queued packets of a socket of type {}", n,
                         u.queue_sender_size(), u.queue_size(), u.type());
        for (int i = 0; i < u.queue_sender_size(); ++i)
            TRY_VOID_CTX(validate_name(u.queue_sender(i), "sender name"), "{}: queued datagram {}", n, i);
    }
    if (u.accepted() && (u.type() == SOCK_DGRAM || u.state() != kStateConnected || u.name().empty() ||
                         u.listener_ino()))
        return failf(EINVAL, "{}: marked accepted, but not a named connected stream or seqpacket end", n);
    if (u.accept_listener_ino() && (u.accept_listener_ino() == u.ino() ||
                                    !(u.accepted() || (u.peer_closed() && !u.closed_peer_name().empty()))))
        return failf(EINVAL, "{}: a listener {} it was accepted from, but it is not an accepted socket", n,
                     u.accept_listener_ino());
    if (!u.closed_peer_name().empty() && !u.peer_closed())
        return failf(EINVAL, "{}: the name of a closed peer, but its peer was not closed", n);
    TRY_VOID_CTX(validate_name(u.closed_peer_name(), "closed peer's name"), "{}", n);
    return {};
}

std::string group_unix(const images::FileEntry& e) {
    const auto& u = e.unix_sk();
    return fmt::format("unix:{}", u.group_ino() ? u.group_ino() : u.ino());
}

Expected<UniqueFd> open_unix(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& u = e.unix_sk();
    if (!c.sockets.contains(u.ino())) {
        if (!c.files)
            return fail(EINVAL, "no file table to find the socket's peers in");
        uint64_t group = u.group_ino() ? u.group_ino() : u.ino();
        TRY_VOID(build_unix_group(c, group));
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
            u->clear_closed_peer_name();
            u->set_accept_listener_ino(0);
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
    // An abstract name held by a socket outside the dump can be had on restore only if that
    // socket is gone by then (a path name is moved aside for the moment it is needed).
    auto held_outside = [&](const std::string& name, int type) {
        if (name.empty() || name[0] != '\0' || !unix_diag_)
            return false;
        for (const auto& [i, o] : *unix_diag_)
            // A connected stream end with the name may be an accepted one, which does not hold it.
            if (!by_ino.contains(i) && o.type == type && o.has_name && o.name == name &&
                (type == SOCK_DGRAM || o.state != kStateConnected))
                return true;
        return false;
    };
    // The listener an accepted socket came from is created with it, if it is in the dump.
    for (auto& [ino, u] : by_ino) {
        uint64_t l = u->accept_listener_ino();
        if (!l)
            continue;
        if (by_ino.contains(l) && by_ino.at(l)->state() == kStateListen) {
            unite(ino, l);
            continue;
        }
        u->set_accept_listener_ino(0);
        const std::string& name = u->accepted() ? u->name() : u->closed_peer_name();
        if (held_outside(name, u->type())) {
            const UnixSeen& seen = unix_seen_.at(ino);
            log.warn("files", "pid {} fd {}: {} listener {} is outside the dump: the socket comes back without this "
                              "name if that listener still holds it at restore", seen.pid, seen.fd,
                     u->accepted() ? "accepted by" : "its closed peer was accepted by", printable(name));
        }
    }
    // A queued datagram's sender in the dump sends it again on restore: created together.
    std::multimap<std::string, uint64_t> dgram_names;
    for (auto& [ino, u] : by_ino)
        if (u->type() == SOCK_DGRAM && !u->name().empty())
            dgram_names.emplace(u->name(), ino);
    for (auto& [ino, u] : by_ino) {
        if (!u->queue_sender_size())
            continue;
        const images::UnixSocket* peer = u->peer_ino() && by_ino.contains(u->peer_ino()) ? by_ino.at(u->peer_ino())
                                                                                         : nullptr;
        size_t others = 0;
        for (const auto& s : u->queue_sender()) {
            if (peer && peer->peer_ino() == ino) {
                // Both ends connected to each other come back as a socketpair, which takes
                // datagrams from its other end only: earlier ones come back as the peer's.
                if (s != peer->name())
                    ++others;
                continue;
            }
            if (auto [b, e] = dgram_names.equal_range(s); b != e) {
                unite(ino, b->second);
            } else if (held_outside(s, SOCK_DGRAM)) {
                const UnixSeen& seen = unix_seen_.at(ino);
                log.warn("files", "pid {} fd {}: a queued datagram from {}, a socket outside the dump: it comes back "
                                  "as sent by an unnamed socket if that socket still holds its name at restore",
                         seen.pid, seen.fd, printable(s));
            }
        }
        if (others) {
            const UnixSeen& seen = unix_seen_.at(ino);
            log.warn("files", "pid {} fd {}: {} datagram(s) queued before the socket and its peer were connected to "
                              "each other come back as sent by the peer", seen.pid, seen.fd, others);
        }
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
        // A named datagram socket's queue is written to its name before it connects, by its
        // senders (unix_group_builder.cc).
        bool named_dgram = u->type() == SOCK_DGRAM && !u->name().empty() && !mutual;
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
