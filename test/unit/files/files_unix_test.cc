// Unix sockets: sock_diag parsing (also of hostile bytes), what the dump records, hostile
// UnixSocket records, and a socketpair plus a listener with a queued client through dump and
// restore.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "criu/files/sock_diag.h"
#include "files_test_util.h"
#include "images/image_io.h"
#include "proto/files.pb.h"

using namespace criu;
using namespace criu::test;

namespace {

// Builds netlink replies byte by byte.
struct NlBuf {
    std::vector<uint8_t> b;
    size_t msg_start = 0;

    void put(const void* p, size_t n) {
        auto* c = static_cast<const uint8_t*>(p);
        b.insert(b.end(), c, c + n);
        while (b.size() % 4)
            b.push_back(0);
    }
    void begin(uint16_t type) {
        msg_start = b.size();
        nlmsghdr h{};
        h.nlmsg_type = type;
        put(&h, sizeof h);
    }
    void end() {
        uint32_t len = static_cast<uint32_t>(b.size() - msg_start);
        std::memcpy(b.data() + msg_start, &len, 4);
    }
    void attr(uint16_t type, const void* p, size_t n) {
        nlattr a{};
        a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + n);
        a.nla_type = type;
        put(&a, sizeof a);
        if (n)
            put(p, n);
    }
    void unix_msg(uint32_t ino, uint8_t type, uint8_t state) {
        begin(SOCK_DIAG_BY_FAMILY);
        unix_diag_msg m{};
        m.udiag_family = AF_UNIX;
        m.udiag_type = type;
        m.udiag_state = state;
        m.udiag_ino = ino;
        put(&m, sizeof m);
    }
};

}  // namespace

TEST_CASE("unix_diag replies are parsed, and malformed ones refused") {
    NlBuf nb;
    nb.unix_msg(70757, SOCK_STREAM, 10);
    nb.attr(UNIX_DIAG_NAME, "\0abs", 4);
    uint32_t icons[2] = {11, 12};
    nb.attr(UNIX_DIAG_ICONS, icons, sizeof icons);
    unix_diag_rqlen rq{2, 128};
    nb.attr(UNIX_DIAG_RQLEN, &rq, sizeof rq);
    uint8_t shut = 3;
    nb.attr(UNIX_DIAG_SHUTDOWN, &shut, 1);
    nb.end();
    nb.unix_msg(70756, SOCK_DGRAM, 1);
    uint32_t peer = 70755;
    nb.attr(UNIX_DIAG_PEER, &peer, 4);
    unix_diag_vfs vfs{4242, 0x800001};
    nb.attr(UNIX_DIAG_VFS, &vfs, sizeof vfs);
    nb.end();

    std::vector<UnixDiag> out;
    bool done = true;
    REQUIRE(parse_unix_diag(nb.b, out, done));
    CHECK_FALSE(done);
    REQUIRE(out.size() == 2);
    CHECK(out[0].ino == 70757);
    CHECK(out[0].state == 10);
    CHECK(out[0].name == std::string("\0abs", 4));
    CHECK(out[0].icons == std::vector<uint32_t>{11, 12});
    CHECK(out[0].rqueue == 2);
    CHECK(out[0].wqueue == 128);
    CHECK(out[0].shutdown == 3);
    CHECK(out[1].type == SOCK_DGRAM);
    CHECK(out[1].peer == 70755);
    CHECK(out[1].vfs_ino == 4242);
    CHECK_FALSE(out[1].has_name);

    SECTION("NLMSG_DONE ends the dump") {
        NlBuf d;
        d.begin(NLMSG_DONE);
        int zero = 0;
        d.put(&zero, 4);
        d.end();
        out.clear();
        REQUIRE(parse_unix_diag(d.b, out, done));
        CHECK(done);
    }
    SECTION("a message longer than the buffer") {
        auto cut = nb.b;
        cut.resize(cut.size() - 4);
        auto st = parse_unix_diag(cut, out, done);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("message of length"));
    }
    SECTION("an attribute longer than its message") {
        NlBuf bad;
        bad.unix_msg(5, SOCK_STREAM, 7);
        nlattr a{};
        a.nla_len = 200;
        a.nla_type = UNIX_DIAG_NAME;
        bad.put(&a, sizeof a);
        bad.end();
        auto st = parse_unix_diag(bad.b, out, done);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("unix_diag of inode 5: attribute 0 has length 200"));
    }
    SECTION("a short fixed-size attribute") {
        NlBuf bad;
        bad.unix_msg(6, SOCK_STREAM, 7);
        uint16_t two = 2;
        bad.attr(UNIX_DIAG_RQLEN, &two, 2);
        bad.end();
        auto st = parse_unix_diag(bad.b, out, done);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("RQLEN attribute of 2 bytes, expected 8"));
    }
    SECTION("an error reply") {
        NlBuf e;
        e.begin(NLMSG_ERROR);
        nlmsgerr err{};
        err.error = -EPERM;
        e.put(&err, sizeof err);
        e.end();
        auto st = parse_unix_diag(e.b, out, done);
        REQUIRE_FALSE(st);
        CHECK(st.error().err() == EPERM);
    }
    SECTION("another family") {
        NlBuf f;
        f.unix_msg(7, SOCK_STREAM, 7);
        f.b[NLMSG_HDRLEN] = AF_INET;
        f.end();
        auto st = parse_unix_diag(f.b, out, done);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("family 2"));
    }
}

TEST_CASE("sock_diag sees a socketpair's peers and a listener's queued connection") {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd a(sv[0]), b(sv[1]);
    REQUIRE(write(b.get(), "eleven byte", 11) == 11);
    UniqueFd l(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string name = fmt::format("criu-unit-diag-{}", getpid());
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    REQUIRE(bind(l.get(), reinterpret_cast<sockaddr*>(&addr), alen) == 0);
    REQUIRE(listen(l.get(), 5) == 0);
    UniqueFd c(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(connect(c.get(), reinterpret_cast<sockaddr*>(&addr), alen) == 0);

    auto ino = [](int fd) {
        struct stat st{};
        fstat(fd, &st);
        return static_cast<uint32_t>(st.st_ino);
    };
    auto all = collect_unix_diag();
    REQUIRE(all);
    REQUIRE(all->contains(ino(a.get())));
    const UnixDiag& da = all->at(ino(a.get()));
    CHECK(da.peer == ino(b.get()));
    CHECK(da.rqueue == 11);
    CHECK(da.state == 1);
    const UnixDiag& dl = all->at(ino(l.get()));
    CHECK(dl.state == 10);
    CHECK(dl.wqueue == 5);
    CHECK(dl.name == std::string(1, '\0') + name);
    REQUIRE(dl.icons.size() == 1);
    CHECK(dl.icons[0] == ino(c.get()));  // the queued connection is named by its client
    CHECK(all->at(ino(c.get())).peer == 0);
}

namespace {

constexpr pid_t kPid = 4212;

images::FileEntry unix_entry(uint32_t id, uint64_t ino, uint64_t peer) {
    images::FileEntry e;
    e.set_id(id);
    e.set_kind(images::FD_UNIX_SK);
    auto* u = e.mutable_unix_sk();
    u->set_ino(ino);
    u->set_type(SOCK_STREAM);
    u->set_state(1);
    u->set_flags(O_RDWR);
    u->set_peer_ino(peer);
    u->set_group_ino(std::min(ino, peer));
    u->set_peek_off(-1);
    return e;
}

std::string load(const std::vector<images::FileEntry>& files) {
    TempDir dir;
    auto write = [&](const std::string& name, ImageType type, const auto& records) {
        auto w = ImageWriter::create_at(dir.fd(), name, type);
        REQUIRE(w);
        for (const auto& r : records)
            REQUIRE(w->write(r));
        REQUIRE(w->close());
    };
    std::vector<images::FdEntry> fds;
    for (const auto& f : files) {
        images::FdEntry fe;
        fe.set_fd(static_cast<int>(f.id()) + 2);
        fe.set_file_id(f.id());
        fe.set_kind(f.kind());
        fds.push_back(fe);
    }
    write(image_file_name(ImageType::Files), ImageType::Files, files);
    write(image_file_name(ImageType::Fdinfo, kPid), ImageType::Fdinfo, fds);
    write(image_file_name(ImageType::PipeData), ImageType::PipeData, std::vector<images::PipeData>{});
    Log log(0);
    auto r = FilesRestorer::load(dir.fd(), {kPid}, log);
    return r ? "" : r.error().str();
}

}  // namespace

TEST_CASE("hostile unix socket records are refused before anything is created") {
    std::vector<images::FileEntry> f{unix_entry(1, 100, 101), unix_entry(2, 101, 100)};
    REQUIRE(load(f) == "");
    auto& u = *f[0].mutable_unix_sk();
    SECTION("no UnixSocket data") {
        f[0].clear_unix_sk();
        CHECK_THAT(load(f), Catch::Contains("files.img record 1 (file id 1): unix socket entry without UnixSocket"));
    }
    SECTION("unknown type") {
        u.set_type(SOCK_RAW);
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: type 3 is not a unix socket type"));
    }
    SECTION("name longer than sun_path") {
        u.set_name(std::string(109, 'x'));
        CHECK_THAT(load(f), Catch::Contains("name of 109 bytes is longer than sun_path"));
    }
    SECTION("path name with a NUL byte") {
        u.set_name(std::string("/tmp/a\0b", 8));
        CHECK_THAT(load(f), Catch::Contains("name \"/tmp/a\" contains a NUL byte"));
    }
    SECTION("relative bind directory") {
        u.set_bind_dir("tmp");
        CHECK_THAT(load(f), Catch::Contains("bind directory: path \"tmp\" is not absolute"));
    }
    SECTION("a listening datagram socket") {
        u.set_type(SOCK_DGRAM);
        u.set_state(10);
        u.set_peer_ino(0);
        CHECK_THAT(load(f), Catch::Contains("a datagram socket cannot listen"));
    }
    SECTION("a huge backlog") {
        u.set_state(10);
        u.set_peer_ino(0);
        u.set_backlog(1u << 30);
        CHECK_THAT(load(f), Catch::Contains("backlog 1073741824"));
    }
    SECTION("its own peer") {
        u.set_peer_ino(100);
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: is its own peer"));
    }
    SECTION("a stream queue in pieces") {
        u.add_queue("a");
        u.add_queue("b");
        CHECK_THAT(load(f), Catch::Contains("a stream queue in 2 pieces"));
    }
    SECTION("too many queued packets") {
        u.set_type(SOCK_DGRAM);
        for (int i = 0; i <= (1 << 16); ++i)
            u.add_queue("q");
        CHECK_THAT(load(f), Catch::Contains("above the limit"));
    }
    SECTION("unknown shutdown bits") {
        u.set_shutdown(4);
        CHECK_THAT(load(f), Catch::Contains("shutdown bits 0x4"));
    }
    SECTION("bad flags") {
        u.set_flags(O_WRONLY);
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: open flags"));
    }
    SECTION("datagram sender names on a stream socket") {
        u.add_queue("abc");
        u.add_queue_sender("x");
        CHECK_THAT(load(f), Catch::Contains("files.img record 1 (file id 1): unix socket ino 100: 1 sender names for "
                                            "1 queued packets of a socket of type 1"));
    }
    SECTION("fewer sender names than queued datagrams") {
        u.set_type(SOCK_DGRAM);
        f[1].mutable_unix_sk()->set_type(SOCK_DGRAM);
        u.add_queue("a");
        u.add_queue("b");
        u.add_queue_sender("");
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: 1 sender names for 2 queued packets"));
    }
    SECTION("a sender name longer than sun_path") {
        u.set_type(SOCK_DGRAM);
        f[1].mutable_unix_sk()->set_type(SOCK_DGRAM);
        u.add_queue("a");
        u.add_queue_sender(std::string(200, 's'));
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: queued datagram 0: sender name of 200 bytes is "
                                            "longer than sun_path"));
    }
    SECTION("a sender path name with a NUL byte") {
        u.set_type(SOCK_DGRAM);
        f[1].mutable_unix_sk()->set_type(SOCK_DGRAM);
        u.add_queue("a");
        u.add_queue_sender(std::string("/s\0x", 4));
        CHECK_THAT(load(f), Catch::Contains("queued datagram 0: sender name \"/s\" contains a NUL byte"));
    }
    SECTION("an unnamed socket marked accepted") {
        u.set_accepted(true);
        CHECK_THAT(load(f), Catch::Contains("files.img record 1 (file id 1): unix socket ino 100: marked accepted, "
                                            "but not a named connected stream or seqpacket end"));
    }
    SECTION("a datagram socket marked accepted") {
        u.set_type(SOCK_DGRAM);
        f[1].mutable_unix_sk()->set_type(SOCK_DGRAM);
        u.set_name(std::string("\0dg", 3));
        u.set_accepted(true);
        CHECK_THAT(load(f), Catch::Contains("marked accepted, but not a named connected stream"));
    }
    SECTION("a listener to be accepted from, on a socket that was not accepted") {
        u.set_accept_listener_ino(7);
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: a listener 7 it was accepted from, but it is not "
                                            "an accepted socket"));
    }
    SECTION("accepted from itself") {
        u.set_name(std::string("\0l", 2));
        u.set_accepted(true);
        u.set_accept_listener_ino(100);
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: a listener 100 it was accepted from"));
    }
    SECTION("a closed peer's name on a socket whose peer is there") {
        u.set_closed_peer_name("/x.sock");
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: the name of a closed peer, but its peer was not "
                                            "closed"));
    }
    SECTION("a closed peer's name longer than sun_path") {
        u.set_peer_ino(0);
        u.set_peer_closed(true);
        f[1].mutable_unix_sk()->set_peer_ino(0);
        u.set_closed_peer_name(std::string(120, 'p'));
        CHECK_THAT(load(f), Catch::Contains("unix socket ino 100: closed peer's name of 120 bytes is longer"));
    }
}

TEST_CASE("accepted sockets and datagram senders keep their names through dump and restore") {
    TempDir images, work;
    std::string lpath = work / "l.sock", cpath = work / "c.sock", spath = work / "s.sock", dpath = work / "d.sock";
    auto addr = [](const std::string& p) {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, p.c_str());
        return a;
    };
    pid_t pid = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        sockaddr_un la = addr(lpath), ca = addr(cpath), sa = addr(spath), da = addr(dpath);
        int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(l, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0 || listen(l, 2) != 0 || !place(l, 5))
            return false;
        if (bind(c, reinterpret_cast<sockaddr*>(&ca), sizeof ca) != 0 ||
            connect(c, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0 || !place(c, 6))
            return false;
        int a = accept(5, nullptr, nullptr);
        if (a < 0 || !place(a, 7))
            return false;
        int d = socket(AF_UNIX, SOCK_DGRAM, 0), s = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (bind(d, reinterpret_cast<sockaddr*>(&da), sizeof da) != 0 || !place(d, 8) ||
            bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            return false;
        // The sender is closed and its file removed: only its name is left, in the queue.
        if (sendto(s, "named", 5, 0, reinterpret_cast<sockaddr*>(&da), sizeof da) != 5 || close(s) != 0 ||
            unlink(sa.sun_path) != 0)
            return false;
        int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
        return sendto(anon, "anon", 4, 0, reinterpret_cast<sockaddr*>(&da), sizeof da) == 4 && close(anon) == 0;
    });
    REQUIRE(pid > 0);
    Log log(0);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    const auto& acc = files.at(7).unix_sk();
    CHECK(acc.accepted());
    CHECK(acc.accept_listener_ino() == files.at(5).unix_sk().ino());
    CHECK(acc.name() == lpath);
    CHECK_FALSE(files.at(6).unix_sk().accepted());
    const auto& d = files.at(8).unix_sk();
    CHECK(std::vector<std::string>(d.queue_sender().begin(), d.queue_sender().end()) ==
          std::vector<std::string>{spath, ""});

    auto name = [](int fd, bool peer) {
        sockaddr_un a{};
        socklen_t len = sizeof a;
        int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                     : getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        return r == 0 && len > offsetof(sockaddr_un, sun_path) ? std::string(a.sun_path) : std::string();
    };
    std::string report = restore_and_check(images.fd(), pid, log, [&] {
        expect(name(7, false) == lpath, "the accepted end's name");
        expect(name(7, true) == cpath, "the accepted end's peer name");
        expect(name(6, false) == cpath && name(6, true) == lpath, "the client's names");
        char buf[16];
        sockaddr_un from{};
        socklen_t flen = sizeof from;
        expect(recvfrom(8, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen) == 5 &&
                   std::string(from.sun_path) == spath,
               "the first datagram's sender name");
        flen = sizeof from;
        expect(recvfrom(8, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen) == 4 &&
                   flen <= offsetof(sockaddr_un, sun_path),
               "the second datagram's sender is unnamed");
        struct stat st{};
        expect(lstat(spath.c_str(), &st) != 0 && errno == ENOENT, "the gone sender's file stays gone");
    });
    CHECK(report == "");
}

TEST_CASE("a socketpair with data both ways and a listener with a queued client survive dump and restore") {
    TempDir images, work;
    std::string path = work / "l.sock";
    pid_t pid = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0 || !place(sv[0], 5) || !place(sv[1], 6))
            return false;
        if (send(5, "to six", 6, 0) != 6 || send(5, "again", 5, 0) != 5 || send(6, "to five", 7, 0) != 7)
            return false;
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, path.c_str());
        if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 4) != 0 || !place(l, 7))
            return false;
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        return c >= 0 && connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && place(c, 8);
    });
    REQUIRE(pid > 0);
    Log log(0);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");

    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files.size() == 7);
    const auto& five = files.at(5).unix_sk();
    const auto& six = files.at(6).unix_sk();
    CHECK(five.type() == SOCK_SEQPACKET);
    CHECK(five.peer_ino() == six.ino());
    CHECK(six.peer_ino() == five.ino());
    CHECK(std::vector<std::string>(five.queue().begin(), five.queue().end()) == std::vector<std::string>{"to five"});
    CHECK(std::vector<std::string>(six.queue().begin(), six.queue().end()) ==
          std::vector<std::string>{"to six", "again"});
    const auto& l = files.at(7).unix_sk();
    CHECK(l.state() == 10);
    CHECK(l.backlog() == 4);
    CHECK(l.name() == path);
    REQUIRE(l.icons_size() == 1);
    CHECK(files.at(8).unix_sk().listener_ino() == l.ino());
    CHECK(files.at(8).unix_sk().group_ino() == files.at(7).unix_sk().group_ino());

    std::string report = restore_and_check(images.fd(), pid, log, [&] {
        char buf[64];
        expect(recv(6, buf, sizeof buf, MSG_DONTWAIT) == 6 && std::memcmp(buf, "to six", 6) == 0, "first packet");
        expect(recv(6, buf, sizeof buf, MSG_DONTWAIT) == 5 && std::memcmp(buf, "again", 5) == 0, "second packet");
        expect(recv(5, buf, sizeof buf, MSG_DONTWAIT) == 7 && std::memcmp(buf, "to five", 7) == 0, "other way");
        expect(recv(5, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "nothing more");
        int s = accept(7, nullptr, nullptr);
        expect(s >= 0, "accepting the queued client");
        expect(write(8, "hi", 2) == 2 && read(s, buf, sizeof buf) == 2, "the queued client talks to the server");
        struct stat st{};
        expect(stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode), "the socket file is back");
    });
    CHECK(report == "");
}

TEST_CASE("a seqpacket whose peer closed keeps its last packets and then reads end of file") {
    TempDir images;
    pid_t pid = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0 || !place(sv[0], 5))
            return false;
        if (send(sv[1], "last", 4, 0) != 4 || send(sv[1], "words", 5, 0) != 5)
            return false;
        return close(sv[1]) == 0;
    });
    REQUIRE(pid > 0);
    Log log(0);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    const auto& five = files.at(5).unix_sk();
    CHECK(five.shutdown() == 3);
    CHECK(std::vector<std::string>(five.queue().begin(), five.queue().end()) ==
          std::vector<std::string>{"last", "words"});

    std::string report = restore_and_check(images.fd(), pid, log, [&] {
        char buf[64];
        expect(recv(5, buf, sizeof buf, MSG_DONTWAIT) == 4 && std::memcmp(buf, "last", 4) == 0, "first packet");
        expect(recv(5, buf, sizeof buf, MSG_DONTWAIT) == 5 && std::memcmp(buf, "words", 5) == 0, "second packet");
        expect(recv(5, buf, sizeof buf, MSG_DONTWAIT) == 0, "end of file after the queue");
    });
    CHECK(report == "");
}

TEST_CASE("a unix peer outside the dump stops the dump, naming pid and fd; --ext-unix-sk reconnects datagrams") {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd mine(sv[0]);
    TempDir work;
    std::string path = work / "outside.sock";
    UniqueFd server(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    REQUIRE(bind(server.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    pid_t pid = spawn_ready_child([&] {
        int theirs = sv[1];
        close(sv[0]);  // the other end stays with the test only
        int d = socket(AF_UNIX, SOCK_DGRAM, 0);
        bool ok = d >= 0 && connect(d, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        return ok && place(theirs, 5) && place(d, 6);
    });
    REQUIRE(pid > 0);
    struct Reap {
        pid_t pid;
        ~Reap() { kill_child(pid); }
    } reap{pid};
    Log log(0);
    Options opts;
    {
        TempDir images;
        FilesDumper dumper;
        REQUIRE(dumper.dump_process_fds(pid, opts, log, images.fd()));
        auto st = dumper.finish(images.fd());
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains(fmt::format("pid {} fd 5: unix socket", pid)));
        CHECK_THAT(st.error().str(), Catch::Contains("which no dumped process holds"));
        CHECK_THAT(st.error().str(),
                   Catch::Contains(fmt::format("pid {} fd 6: unix socket", pid)) &&
                       Catch::Contains("--ext-unix-sk reconnects datagram sockets by name"));
    }
    {
        // With the flag the stream end is still refused; the datagram socket is kept by name.
        TempDir images;
        FilesDumper dumper;
        opts.ext_unix_sk = true;
        REQUIRE(dumper.dump_process_fds(pid, opts, log, images.fd()));
        auto st = dumper.finish(images.fd());
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("--ext-unix-sk covers datagram sockets only"));
        CHECK(st.error().str().find(fmt::format("pid {} fd 6", pid)) == std::string::npos);
    }
}

TEST_CASE("names still held outside the dump: the dump warns, and the restore brings the socket back unnamed") {
    TempDir images, work, logs;
    auto abstract = [](const std::string& n) {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path + 1, n.data(), n.size());
        return std::pair{a, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n.size())};
    };
    std::string lname = fmt::format("criu-unit-outside-l-{}", getpid());
    std::string sname = fmt::format("criu-unit-outside-s-{}", getpid());
    auto [la, lalen] = abstract(lname);
    auto [sa, salen] = abstract(sname);
    // The listener and the sender stay with the test, outside the dump.
    UniqueFd l(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(bind(l.get(), reinterpret_cast<sockaddr*>(&la), lalen) == 0);
    REQUIRE(listen(l.get(), 2) == 0);
    UniqueFd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(bind(s.get(), reinterpret_cast<sockaddr*>(&sa), salen) == 0);
    sockaddr_un da{};
    da.sun_family = AF_UNIX;
    std::strcpy(da.sun_path, (work / "d.sock").c_str());
    pid_t pid = spawn_ready_child([&] {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&la), lalen) != 0)
            return false;
        int a = accept(l.get(), nullptr, nullptr);
        if (a < 0 || !place(c, 5) || !place(a, 6))
            return false;
        int d = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (d < 0 || bind(d, reinterpret_cast<sockaddr*>(&da), sizeof da) != 0 || !place(d, 7))
            return false;
        // Like stdio_null_rest_closed(), keeping 5 to 7: the listener's copy goes too.
        int nul = open("/dev/null", O_RDWR);
        for (int i = 0; i < 3; ++i)
            if (dup2(nul, i) != i)
                return false;
        return close_range(3, 4, 0) == 0 && close_range(8, kReadyFd - 1, 0) == 0 &&
               close_range(kReadyFd + 1, ~0u, 0) == 0;
    });
    REQUIRE(pid > 0);
    REQUIRE(sendto(s.get(), "outside", 7, 0, reinterpret_cast<sockaddr*>(&da), sizeof da) == 7);
    auto log_text = [](const std::string& path) {
        UniqueFd f(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        std::string all, part;
        while (f && !(part = read_some(f.get())).empty())
            all += part;
        return all;
    };
    {
        Log log(0);
        REQUIRE(log.open_file(logs / "dump.log"));
        REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    }
    std::string dumped = log_text(logs / "dump.log");
    CHECK_THAT(dumped, Catch::Contains(fmt::format("pid {} fd 6: accepted by listener @{} is outside the dump", pid,
                                                   lname)));
    CHECK_THAT(dumped, Catch::Contains(fmt::format("pid {} fd 7: a queued datagram from @{}, a socket outside the dump",
                                                   pid, sname)));
    std::string report;
    {
        Log log(0);
        REQUIRE(log.open_file(logs / "restore.log"));
        report = restore_and_check(images.fd(), pid, log, [&] {
            char buf[16];
            expect(write(5, "hi", 2) == 2 && recv(6, buf, sizeof buf, MSG_DONTWAIT) == 2, "the pair still talks");
            sockaddr_un from{};
            socklen_t flen = sizeof from;
            expect(recvfrom(7, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen) == 7 &&
                       flen <= offsetof(sockaddr_un, sun_path),
                   "the datagram is there, from an unnamed sender");
        });
    }
    CHECK(report == "");
    std::string restored = log_text(logs / "restore.log");
    CHECK_THAT(restored, Catch::Contains(fmt::format("restored without its name @{}", lname)));
    CHECK_THAT(restored, Catch::Contains(fmt::format("a queued datagram from @{} is restored as sent by an unnamed "
                                                     "socket", sname)));
}
