// Restoring a group of unix sockets (unix_group_builder.h).
//
// The order: listeners and named sockets that are not a connected end first; then the
// connections made by accept(), while every listener's queue is still empty (accept() takes the
// oldest queued connection); then socketpairs; then the clients queued in a listener, in its
// queue order; then the rest, connected once every named socket exists; then queues (written
// by the peer, or for a named datagram socket by a socket bound to each datagram's sender
// name), options and shutdown.
//
// Names a socket only shares: an accepted socket's name is its listener's (the kernel copies the
// listener's address into it, af_unix.c unix_stream_connect()), and the name recvfrom() shows
// for a datagram is its sender's at the time of reading. Both are recreated with a socket bound
// to that name for the moment it takes: a temporary listener the client connects to, or a
// temporary sender. A path name for such a moment is bound where it was when nothing else is
// there, else the file there is moved aside and put back; a relative name nobody keeps is bound
// in a temporary directory (the name is the string given to bind(), not the file).
#include "criu/files/unix_group_builder.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <utility>

#include <fmt/format.h>

namespace criu {

namespace unix_sk {

std::string sk_name(const images::UnixSocket& u) {
    return fmt::format("unix socket ino {}", u.ino());
}

std::string printable(const std::string& name) {
    if (!name.empty() && name[0] == '\0')
        return "@" + name.substr(1);
    return name;
}

}  // namespace unix_sk

namespace {

using namespace unix_sk;

bool is_path(const std::string& name) {
    return !name.empty() && name[0] != '\0';
}

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

Status set_file_attrs(const std::string& name, const images::UnixSocket& u) {
    if (chmod(name.c_str(), u.file_mode()) != 0 || lchown(name.c_str(), u.file_uid(), u.file_gid()) != 0)
        return fail_errno("setting mode {:o} and owner {}:{} of {}", u.file_mode(), u.file_uid(), u.file_gid(), name);
    return {};
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
        return set_file_attrs(name, u);
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

// A socket bound to a name only for as long as a connection or a datagram needs it. `keep`:
// the socket file stays at the path afterwards (an accepted socket's, whose listener is gone
// but whose file was there at dump time); otherwise the path is left as it was found.
class TempName {
public:
    static Expected<TempName> create(int type, const std::string& name, const std::string& dir, bool keep,
                                     bool listening) {
        TempName t;
        t.name_ = name;
        t.dir_ = dir;
        t.keep_ = keep;
        t.fd_.reset(socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!t.fd_)
            return fail_errno("socket(AF_UNIX, {})", type);
        if (is_path(name) && name[0] != '/' && dir.empty()) {
            // A relative name with no directory of its own: any directory gives the same name.
            char tmpl[] = "/tmp/criu-unix-XXXXXX";
            if (!mkdtemp(tmpl))
                return fail_errno("mkdtemp {}", tmpl);
            t.tmpdir_ = t.dir_ = tmpl;
            t.keep_ = false;
        }
        Status st = in_dir(t.dir_, [&]() -> Status {
            if (is_path(name)) {
                struct stat st{};
                if (lstat(name.c_str(), &st) == 0) {
                    if (t.keep_ && !S_ISSOCK(st.st_mode))
                        return failf(EEXIST, "cannot bind {}: the path exists and is not a socket", name);
                    if (t.keep_) {
                        if (unlink(name.c_str()) != 0)
                            return fail_errno("unlinking the stale socket file {}", name);
                    } else {
                        std::string aside = fmt::format("{}.criu-aside-{}", name, getpid());
                        if (renameat2(AT_FDCWD, name.c_str(), AT_FDCWD, aside.c_str(), RENAME_NOREPLACE) != 0)
                            return fail_errno("moving {} aside to bind a socket there for a moment", name);
                        t.aside_ = aside;
                    }
                }
            }
            auto [a, alen] = address(name);
            if (bind(t.fd_.get(), reinterpret_cast<sockaddr*>(&a), alen) != 0)
                return fail_errno("bind to {}", printable(name));
            t.bound_ = true;
            if (listening && listen(t.fd_.get(), 1) != 0)
                return fail_errno("listen on {}", printable(name));
            return {};
        });
        if (!st) {
            (void)t.release();
            return std::unexpected(st.error());
        }
        return t;
    }

    TempName() = default;
    TempName(TempName&& o) noexcept { *this = std::move(o); }
    TempName& operator=(TempName&& o) noexcept {
        if (this != &o) {
            (void)release();
            fd_ = std::move(o.fd_);
            name_ = std::move(o.name_);
            dir_ = std::move(o.dir_);
            tmpdir_ = std::move(o.tmpdir_);
            aside_ = std::move(o.aside_);
            keep_ = o.keep_;
            bound_ = std::exchange(o.bound_, false);
            o.tmpdir_.clear();
            o.aside_.clear();
        }
        return *this;
    }
    ~TempName() { (void)release(); }

    int fd() const { return fd_.get(); }
    // Where a relative name is to be reached (connect(), sendto()).
    const std::string& dir() const { return dir_; }

    // Closes the socket and leaves the path as it was (or with the kept file).
    Status release() {
        fd_.reset();
        Status st;
        if (is_path(name_) && (bound_ || !aside_.empty())) {
            st = in_dir(dir_, [&]() -> Status {
                if (bound_ && !keep_ && unlink(name_.c_str()) != 0)
                    return fail_errno("unlinking the temporary socket file {}", name_);
                if (!aside_.empty() && rename(aside_.c_str(), name_.c_str()) != 0)
                    return fail_errno("putting {} back from {}", name_, aside_);
                return {};
            });
        }
        bound_ = false;
        aside_.clear();
        if (!tmpdir_.empty() && rmdir(tmpdir_.c_str()) != 0 && st)
            st = fail_errno("removing the temporary directory {}", tmpdir_);
        tmpdir_.clear();
        return st;
    }

private:
    UniqueFd fd_;
    std::string name_, dir_, tmpdir_, aside_;
    bool keep_ = false;
    bool bound_ = false;
};

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
        // 2. Connections made by accept(), and clients whose accepted end was closed.
        for (auto& [ino, u] : members_) {
            if (fds_.contains(ino) || u->type() == SOCK_DGRAM)
                continue;
            if (u->accepted() && (mutual(*u) || u->peer_closed()))
                TRY_VOID_CTX(create_accepted(*u), "{}", sk_name(*u));
            else if (u->peer_closed() && !u->closed_peer_name().empty())
                TRY_VOID_CTX(create_closed_client(*u), "{}", sk_name(*u));
        }
        // 3. Pairs (both ends in the dump) and ends whose peer was closed.
        for (auto& [ino, u] : members_) {
            if (fds_.contains(ino))
                continue;
            if (mutual(*u))
                TRY_VOID_CTX(create_pair(*u, peer_of(*u)), "{}", sk_name(*u));
            else if (u->peer_closed())
                TRY_VOID_CTX(create_pair(*u, nullptr), "{}", sk_name(*u));
        }
        // 4. Clients queued in a listener, in its queue order.
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
        // 5. The rest: unconnected sockets and the senders of one-way datagram connections,
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
        // Datagrams queued to a name, sent before the receiver connects: a connected socket
        // takes datagrams from its peer only (unix_may_send()), but may hold earlier ones.
        for (auto& [ino, u] : members_)
            if (by_name(*u))
                TRY_VOID_CTX(write_named_queue(*u), "{}", sk_name(*u));
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
        // 6. Queued data (written by the peer or the datagrams' senders), options, shutdown,
        //    peek offset.
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

    template <class... A>
    void warn(fmt::format_string<A...> f, A&&... a) {
        if (c_.log)
            c_.log->warn("files", f, std::forward<A>(a)...);
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
        // end's name comes from its listener (create_accepted).
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

    // The restored listener `ino` of an accepted socket (or of a closed client's peer), or null
    // when it is not in the dump.
    Expected<const images::UnixSocket*> listener(const images::UnixSocket& u, uint64_t ino) {
        if (!ino)
            return nullptr;
        auto it = members_.find(ino);
        if (it == members_.end() || it->second->state() != kStateListen || it->second->type() != u.type() ||
            !fds_.contains(ino))
            return failf(EINVAL, "accepted from {}, which is not a listening socket of its type in its group", ino);
        return it->second;
    }

    // A connection as accept() made it: a client (bound to `client`'s name first, if given)
    // connects to the listener `l` (the restored one) or, without one, to a temporary listener
    // bound to `name`; the listener accepts it at once. Returns {client end, accepted end}.
    Expected<std::pair<UniqueFd, UniqueFd>> connect_accept(int type, const images::UnixSocket* client,
                                                           const images::UnixSocket* l, const std::string& name,
                                                           const std::string& dir, const images::UnixSocket* keep) {
        UniqueFd cfd(socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!cfd)
            return fail_errno("socket(AF_UNIX, {})", type);
        if (client)
            TRY_VOID(bind_name(cfd.get(), *client));
        std::optional<TempName> tmp;
        int lfd = -1;
        std::string at_dir = dir;
        if (l) {
            lfd = fds_.at(l->ino()).get();
        } else {
            tmp = TRY(TempName::create(type, name, dir, keep != nullptr, true));
            lfd = tmp->fd();
            at_dir = tmp->dir();
            if (keep && is_path(name))
                TRY_VOID(in_dir(at_dir, [&] { return set_file_attrs(name, *keep); }));
        }
        TRY_VOID(connect_to(cfd.get(), name, at_dir, true));
        UniqueFd afd(accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!afd)
            return fail_errno("accepting the connection just made to {}", printable(name));
        // A restored listener is reachable by anyone: make sure the connection taken is ours.
        ucred cr{};
        socklen_t crlen = sizeof cr;
        if (getsockopt(afd.get(), SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0)
            return fail_errno("SO_PEERCRED of the accepted connection");
        if (cr.pid != getpid())
            return failf(EBUSY, "pid {} connected to {} while it was being restored", cr.pid, printable(name));
        if (tmp)
            TRY_VOID(tmp->release());
        return std::pair{std::move(cfd), std::move(afd)};
    }

    // An accepted socket (its client is its peer, or was closed): its name comes back by
    // connecting to a listener with its name.
    Status create_accepted(const images::UnixSocket& u) {
        const images::UnixSocket* p = peer_of(u);
        if (p && p->accepted())
            return failf(EINVAL, "both ends of a connection are marked accepted (the other is {})", sk_name(*p));
        const images::UnixSocket* l = TRY(listener(u, u.accept_listener_ino()));
        auto made = connect_accept(u.type(), p, l, l ? l->name() : u.name(), l ? l->bind_dir() : u.bind_dir(),
                                   u.name_unlinked() ? nullptr : &u);
        if (!made) {
            if (l)
                return std::unexpected(made.error());
            warn("{}: restored without its name {}: {}", sk_name(u), printable(u.name()), made.error().str());
            return create_pair(u, p);
        }
        fds_[u.ino()] = std::move(made->second);
        if (p)
            fds_[p->ino()] = std::move(made->first);
        else
            closed_peer_[u.ino()] = std::move(made->first);
        return {};
    }

    // A client whose accepted end was closed still shows that end's name as its peer's.
    Status create_closed_client(const images::UnixSocket& u) {
        const images::UnixSocket* l = TRY(listener(u, u.accept_listener_ino()));
        auto made = connect_accept(u.type(), &u, l, l ? l->name() : u.closed_peer_name(), l ? l->bind_dir() : "",
                                   nullptr);
        if (!made) {
            if (l)
                return std::unexpected(made.error());
            warn("{}: its closed peer's name {} is not restored: {}", sk_name(u), printable(u.closed_peer_name()),
                 made.error().str());
            return create_pair(u, nullptr);
        }
        fds_[u.ino()] = std::move(made->first);
        closed_peer_[u.ino()] = std::move(made->second);
        return {};
    }

    // The socket that sends a queued datagram whose sender was named `name` to `u`: the
    // restored socket of that name, or a temporary one (kept in `temp` until the queue is
    // written). -1: the name cannot be had (taken outside the dump); the datagram is then sent
    // unnamed, with a warning.
    Expected<int> sender(const images::UnixSocket& u, const std::string& name, std::map<std::string, TempName>& temp) {
        for (auto& [ino, m] : members_)
            if (m->type() == SOCK_DGRAM && m->name() == name && fds_.contains(ino))
                return fds_.at(ino).get();
        if (auto it = temp.find(name); it != temp.end())
            return it->second.fd();
        auto t = TempName::create(SOCK_DGRAM, name, {}, false, false);
        if (!t) {
            warn("{}: a queued datagram from {} is restored as sent by an unnamed socket: {}", sk_name(u),
                 printable(name), t.error().str());
            return -1;
        }
        return temp.emplace(name, std::move(*t)).first->second.fd();
    }

    // A named datagram socket that is not one end of a pair: its queue was sent to its name.
    bool by_name(const images::UnixSocket& u) const {
        return u.type() == SOCK_DGRAM && !u.name().empty() && !mutual(u) && !closed_peer_.contains(u.ino());
    }

    // Each datagram from a socket bound to its sender's name (images without sender names, or
    // an unnamed sender: from an unnamed socket).
    Status write_named_queue(const images::UnixSocket& u) {
        if (!u.queue_size())
            return {};
        UniqueFd unnamed(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!unnamed)
            return fail_errno("socket for writing back queued datagrams");
        bool by_sender = u.queue_sender_size() == u.queue_size();
        std::map<std::string, TempName> temp;
        for (int i = 0; i < u.queue_size(); ++i) {
            int w = unnamed.get();
            if (by_sender && !u.queue_sender(i).empty())
                if (int s = TRY(sender(u, u.queue_sender(i), temp)); s >= 0)
                    w = s;
            TRY_VOID(send_all(w, u.queue(i), u.name(), u.bind_dir()));
        }
        for (auto& [name, t] : temp)
            TRY_VOID_CTX(t.release(), "the temporary sender {}", printable(name));
        return {};
    }

    Status finish(const images::UnixSocket& u) {
        int fd = fds_.at(u.ino()).get();
        if (u.queue_size() && !by_name(u)) {
            // Who can put data into this socket's queue: its peer, or the temporary end
            // standing for a closed peer.
            int writer = -1;
            if (auto it = closed_peer_.find(u.ino()); it != closed_peer_.end())
                writer = it->second.get();
            else if (mutual(u))
                writer = fds_.at(u.peer_ino()).get();
            else
                return failf(ENOTSUP, "{} queued packet(s) and no peer that could have sent them", u.queue_size());
            for (const auto& q : u.queue())
                TRY_VOID(send_all(writer, q, {}, {}));
        }
        closed_peer_.erase(u.ino());
        // After the queue: a receiver with SO_PASSCRED may make the kernel autobind an unnamed
        // sender (unix_dgram_sendmsg()), which would give the datagram a name.
        int on = u.passcred();
        if (on && setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
            return fail_errno("SO_PASSCRED");
        if (u.name_unlinked() && is_path(u.name()) && !u.accepted()) {
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

}  // namespace

Status build_unix_group(KindRestoreContext& c, uint64_t group) {
    UnixGroupBuilder b(c, group);
    return b.build();
}

}  // namespace criu
