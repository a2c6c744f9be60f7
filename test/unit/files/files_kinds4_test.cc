// Ptys, netlink sockets and file-lock lines: dumped from a child with FilesDumper, restored in a
// fresh child with FilesRestorer and checked from inside; plus the parsers and hostile entries.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/file_locks.h"
#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

TEST_CASE("pty pair: index, termios, window size, packet mode and data survive") {
    TempDir images;
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        int m = posix_openpt(O_RDWR | O_NOCTTY);
        if (m < 0 || unlockpt(m) != 0)
            return false;
        int s = open(ptsname(m), O_RDWR | O_NOCTTY);
        termios t{};
        if (s < 0 || tcgetattr(s, &t) != 0)
            return false;
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        winsize ws{.ws_row = 24, .ws_col = 132, .ws_xpixel = 0, .ws_ypixel = 0};
        int one = 1;
        return tcsetattr(s, TCSANOW, &t) == 0 && ioctl(m, TIOCSWINSZ, &ws) == 0 && ioctl(m, TIOCPKT, &one) == 0 &&
               place(m, 10) && place(s, 11);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_pty());
    REQUIRE(files[11].has_pty());
    CHECK(files[10].pty().master());
    CHECK(files[10].pty().packet_mode());
    CHECK_FALSE(files[11].pty().master());
    uint32_t index = files[10].pty().index();
    CHECK(files[11].pty().index() == index);
    CHECK(files[11].pty().path() == fmt::format("/dev/pts/{}", index));
    CHECK(files[10].pty().termios().ws_col() == 132);

    std::string out = restore_and_check(images.fd(), pid, log, [index] {
        unsigned int n = 0;
        expect(ioctl(10, TIOCGPTN, &n) == 0 && n == index, fmt::format("index {}, dumped {}", n, index));
        int pkt = 0;
        expect(ioctl(10, TIOCGPKT, &pkt) == 0 && pkt == 1, "packet mode");
        winsize ws{};
        expect(ioctl(11, TIOCGWINSZ, &ws) == 0 && ws.ws_col == 132 && ws.ws_row == 24, "window size");
        termios t{};
        expect(tcgetattr(11, &t) == 0 && !(t.c_lflag & (ICANON | ECHO)), "raw termios");
        expect(write(11, "hi", 2) == 2, "slave write");
        char buf[8] = {};
        // Packet mode: a TIOCPKT_DATA (0) byte before the data.
        ssize_t got = read(10, buf, sizeof buf);
        expect(got == 3 && buf[0] == 0 && buf[1] == 'h' && buf[2] == 'i', fmt::format("master read {} bytes", got));
    });
    CHECK(out == "");
}

TEST_CASE("netlink socket: port id, groups and type survive") {
    TempDir images;
    const uint32_t port = 0x7e000000u | uint32_t(getpid() & 0xffff);
    pid_t pid = spawn_ready_child([port] {
        if (!stdio_null_rest_closed())
            return false;
        int fd = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE);
        sockaddr_nl a{};
        a.nl_family = AF_NETLINK;
        a.nl_pid = port;
        unsigned grp = RTNLGRP_IPV4_IFADDR;
        return fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
               setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof grp) == 0 && place(fd, 12);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[12].has_netlink());
    CHECK(files[12].netlink().port_id() == port);
    REQUIRE(files[12].netlink().groups_size() == 1);
    CHECK(files[12].netlink().groups(0) == RTNLGRP_IPV4_IFADDR);

    std::string out = restore_and_check(images.fd(), pid, log, [port] {
        sockaddr_nl a{};
        socklen_t len = sizeof a;
        expect(getsockname(12, reinterpret_cast<sockaddr*>(&a), &len) == 0 && a.nl_pid == port, "port id");
        uint32_t groups[2] = {};
        socklen_t glen = sizeof groups;
        expect(getsockopt(12, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &glen) == 0 &&
                   groups[0] == (1u << (RTNLGRP_IPV4_IFADDR - 1)),
               fmt::format("groups {:#x}", groups[0]));
        int type = 0;
        socklen_t tlen = sizeof type;
        expect(getsockopt(12, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_DGRAM, "type");
    });
    CHECK(out == "");
}

TEST_CASE("lock lines of fdinfo") {
    auto w = parse_lock_line("\t1: POSIX  ADVISORY  WRITE 32231 fe:00:10953469 5 14");
    REQUIRE(w);
    CHECK(w->kind() == images::LOCK_POSIX);
    CHECK(w->write());
    CHECK(w->start() == 5);
    CHECK(w->end() == 14);
    CHECK_FALSE(w->to_eof());
    CHECK(describe_lock(*w) == "POSIX write lock on bytes 5-14");

    auto r = parse_lock_line("2: POSIX  ADVISORY  READ 32231 fe:00:10953469 100 EOF");
    REQUIRE(r);
    CHECK_FALSE(r->write());
    CHECK(r->to_eof());
    auto o = parse_lock_line("1: OFDLCK ADVISORY  WRITE -1 fe:00:10953471 3 6");
    REQUIRE(o);
    CHECK(o->kind() == images::LOCK_OFD);
    auto f = parse_lock_line("1: FLOCK  ADVISORY  READ 32231 fe:00:10953470 0 EOF");
    REQUIRE(f);
    CHECK(describe_lock(*f) == "flock read lock on the whole file");
    CHECK(describe_lock(*f, "/tmp/x") == "flock read lock on /tmp/x");
    CHECK(describe_lock(*w, "/tmp/x") == "POSIX write lock on bytes 5-14 of /tmp/x");

    auto lease = parse_lock_line("1: LEASE  ACTIVE    READ 1234 fe:00:77 0 EOF");
    REQUIRE_FALSE(lease);
    CHECK(lease.error().err() == ENOTSUP);
    CHECK_FALSE(parse_lock_line("1: POSIX ADVISORY WRITE"));
    CHECK_FALSE(parse_lock_line("1: POSIX  ADVISORY  WRITE 1 fe:00:1 9 3"));  // end before start

    auto all = parse_fdinfo_locks("pos:\t0\nflags:\t02\nlock:\t1: FLOCK  ADVISORY  WRITE 9 fe:00:1 0 EOF\n"
                                  "lock:\t2: POSIX  ADVISORY  READ 9 fe:00:1 0 0\n");
    REQUIRE(all);
    CHECK(all->size() == 2);
}

TEST_CASE("hostile pty and netlink entries are refused") {
    images::FileEntry e;
    e.set_kind(images::FD_PTY);
    auto* p = e.mutable_pty();
    p->set_index(3);
    p->set_path("/etc/passwd");
    p->set_flags(O_RDWR);
    CHECK_FALSE(kPtySlaveKind.validate(e));
    p->set_path("/dev/pts/3");
    CHECK(kPtySlaveKind.validate(e));
    p->mutable_termios()->set_cc(std::string(200, 'x'));
    CHECK_FALSE(kPtySlaveKind.validate(e));
    p->mutable_termios()->clear_cc();
    p->set_ctty_sid(5);  // a session without a foreground group
    CHECK_FALSE(kPtySlaveKind.validate(e));

    images::FileEntry n;
    n.set_kind(images::FD_NETLINK_SK);
    n.mutable_netlink()->set_type(SOCK_RAW);
    n.mutable_netlink()->set_flags(O_RDWR);
    CHECK(kNetlinkKind.validate(n));
    n.mutable_netlink()->set_protocol(999);
    CHECK_FALSE(kNetlinkKind.validate(n));
    n.mutable_netlink()->set_protocol(0);
    n.mutable_netlink()->add_groups(0);
    CHECK_FALSE(kNetlinkKind.validate(n));
}
