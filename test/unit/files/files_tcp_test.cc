// Established TCP connections (--tcp-established): the network lock (an nft table that drops a
// connection's packets both ways), and a connection read in repair mode and taken over by a new
// socket with both queues intact, while its peer (in this process) sees a pause only. Hostile
// TcpRepair records are refused before anything is created.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <fmt/format.h>

#include "criu/files/fd_kind_table.h"
#include "criu/files/net_lock.h"
#include "criu/files/tcp_repair.h"

using namespace criu;

namespace {

struct Conn {
    int family = AF_INET;
    UniqueFd listener, client, server;
};

std::pair<sockaddr_storage, socklen_t> loopback(int family) {
    sockaddr_storage ss{};
    if (family == AF_INET) {
        auto& a = reinterpret_cast<sockaddr_in&>(ss);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return {ss, sizeof(sockaddr_in)};
    }
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return {ss, sizeof(sockaddr_in6)};
}

Conn connect_pair(int family) {
    Conn c;
    c.family = family;
    auto [a, len] = loopback(family);
    c.listener.reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(bind(c.listener.get(), reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(listen(c.listener.get(), 1) == 0);
    REQUIRE(getsockname(c.listener.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    c.client.reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE((connect(c.client.get(), reinterpret_cast<sockaddr*>(&a), len) == 0 || errno == EINPROGRESS));
    c.server.reset(accept4(c.listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    REQUIRE(c.server);
    pollfd p{c.client.get(), POLLOUT, 0};
    REQUIRE(poll(&p, 1, 10000) == 1);
    return c;
}

// Both ends of the client's connection as InetSocket addresses.
images::InetSocket describe(int fd, int family) {
    images::InetSocket s;
    sockaddr_storage l{}, p{};
    socklen_t ll = sizeof l, pl = sizeof p;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&l), &ll) == 0);
    REQUIRE(getpeername(fd, reinterpret_cast<sockaddr*>(&p), &pl) == 0);
    auto ip = [&](const sockaddr_storage& ss) {
        return family == AF_INET
                   ? std::string(reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in&>(ss).sin_addr), 4)
                   : std::string(reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr), 16);
    };
    auto port = [&](const sockaddr_storage& ss) {
        return family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port)
                                 : ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
    };
    s.set_family(family);
    s.set_protocol(IPPROTO_TCP);
    s.set_state(TCP_ESTABLISHED);
    s.set_flags(O_RDWR);
    s.set_src_addr(ip(l));
    s.set_src_port(port(l));
    s.set_dst_addr(ip(p));
    s.set_dst_port(port(p));
    s.set_peek_off(-1);
    return s;
}

TcpTuple tuple_of(const images::InetSocket& s) {
    return {s.family(), s.src_addr(), s.src_port(), s.dst_addr(), s.dst_port()};
}

uint8_t pattern(uint32_t seed, uint64_t off) { return static_cast<uint8_t>((off * 2654435761u + seed) >> 7); }

// Writes the pattern until the socket takes no more; returns how much it took.
uint64_t fill(int fd, uint32_t seed, uint64_t at, uint64_t max) {
    std::string buf(65536, '\0');
    uint64_t done = 0;
    while (done < max) {
        for (size_t i = 0; i < buf.size(); ++i)
            buf[i] = static_cast<char>(pattern(seed, at + done + i));
        ssize_t n = send(fd, buf.data(), std::min<uint64_t>(buf.size(), max - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        done += static_cast<uint64_t>(n);
    }
    return done;
}

// Reads `want` bytes, checking them against the pattern from offset `from`; "" or what went wrong.
std::string drain(int fd, uint32_t seed, uint64_t from, uint64_t want, int timeout_ms = 30000) {
    std::string buf(65536, '\0');
    uint64_t got = 0;
    while (got < want) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            return fmt::format("only {} of {} bytes arrived", got, want);
        ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n <= 0)
            return fmt::format("recv after {} bytes: {}", got, n == 0 ? "end of stream" : std::strerror(errno));
        for (ssize_t i = 0; i < n; ++i)
            if (static_cast<uint8_t>(buf[i]) != pattern(seed, from + got + i))
                return fmt::format("byte {} is wrong", from + got + i);
        got += static_cast<uint64_t>(n);
    }
    char extra;
    if (recv(fd, &extra, 1, MSG_DONTWAIT) > 0)
        return "more bytes than were sent";
    return "";
}

bool table_exists(const std::string& name) {
    return run_nft(fmt::format("list table inet {}\n", name)).has_value();
}

}  // namespace

TEST_CASE("the network lock holds a connection's packets both ways until released") {
    int family = GENERATE(AF_INET, AF_INET6);
    Conn c = connect_pair(family);
    images::InetSocket s = describe(c.client.get(), family);
    Log log(0);
    std::string table;
    {
        NetLock lock;
        REQUIRE(lock.block(tuple_of(s), getpid(), log));
        table = lock.table();
        CHECK(table.starts_with(fmt::format("criu_tcp_{}_", getpid())));
        CHECK(valid_lock_table_name(table));
        CHECK(table_exists(table));
        REQUIRE(send(c.server.get(), "ping", 4, MSG_NOSIGNAL) == 4);
        // Nothing may come through while the lock holds (the sender retransmits meanwhile).
        pollfd p{c.client.get(), POLLIN, 0};
        CHECK(poll(&p, 1, 300) == 0);
        REQUIRE(lock.release(log));
        CHECK_FALSE(table_exists(table));
        REQUIRE(poll(&p, 1, 20000) == 1);  // the next retransmission gets through
        char buf[8];
        CHECK(recv(c.client.get(), buf, sizeof buf, 0) == 4);
    }
    // Removing a table that is gone is no error; names criu did not make are refused.
    CHECK(remove_lock_table(table, log));
    CHECK_FALSE(remove_lock_table("filter", log));
    CHECK_FALSE(valid_lock_table_name("criu_tcp_1; flush ruleset"));
}

TEST_CASE("a connection read in repair mode is taken over by a new socket with both queues") {
    int family = GENERATE(AF_INET, AF_INET6);
    Conn c = connect_pair(family);
    // The server sends without the client reading (the client's receive queue fills), and the
    // client sends without the server reading (its send queue fills once the server's window
    // is full).
    uint64_t to_client = fill(c.server.get(), 7, 0, 300000);
    uint64_t to_server = fill(c.client.get(), 9, 0, 64u << 20);
    REQUIRE(to_client > 0);
    REQUIRE(to_server > 0);
    images::InetSocket s = describe(c.client.get(), family);
    Log log(0);
    NetLock lock;
    REQUIRE(lock.block(tuple_of(s), getpid(), log));
    REQUIRE(tcp_set_repair(c.client.get(), TCP_REPAIR_ON));
    auto st = tcp_repair_dump(c.client.get(), *s.mutable_tcp(), "client");
    REQUIRE(st);
    const auto& r = s.tcp();
    CHECK(r.recv_queue().size() > 0);
    CHECK(r.send_queue().size() > 0);
    CHECK(r.mss() > 0);
    INFO(fmt::format("receive queue {}, send queue {} ({} never sent)", r.recv_queue().size(), r.send_queue().size(),
                     r.unsent()));
    // The queues are exactly the bytes in flight: the receive queue starts at offset 0 of the
    // server's stream, the send queue ends with the client's last byte.
    REQUIRE(r.recv_queue().size() <= to_client);
    for (size_t i = 0; i < r.recv_queue().size(); i += 4093)
        CHECK(static_cast<uint8_t>(r.recv_queue()[i]) == pattern(7, i));
    uint64_t sendq_at = to_server - r.send_queue().size();
    for (size_t i = 0; i < r.send_queue().size(); i += 4093)
        CHECK(static_cast<uint8_t>(r.send_queue()[i]) == pattern(9, sendq_at + i));
    CHECK(fd_kind_ops(images::FD_INET_SK) != nullptr);

    // The dumped socket goes away in repair mode: nothing reaches the server.
    c.client.reset();
    UniqueFd fresh(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(fresh);
    auto rs = tcp_repair_restore(fresh.get(), s, "client");
    REQUIRE(rs);
    REQUIRE(lock.release(log));

    // Everything the server sent reaches the new socket once, and the other way round.
    CHECK(drain(c.server.get(), 9, 0, to_server) == "");
    CHECK(drain(fresh.get(), 7, 0, to_client) == "");
    // The connection goes on both ways.
    CHECK(fill(fresh.get(), 9, to_server, 1000) == 1000);
    CHECK(drain(c.server.get(), 9, to_server, 1000) == "");
    CHECK(fill(c.server.get(), 7, to_client, 1000) == 1000);
    CHECK(drain(fresh.get(), 7, to_client, 1000) == "");
}

TEST_CASE("hostile TcpRepair records are refused") {
    images::FileEntry e;
    e.set_id(1);
    e.set_kind(images::FD_INET_SK);
    auto* s = e.mutable_inet();
    s->set_family(AF_INET);
    s->set_protocol(IPPROTO_TCP);
    s->set_state(TCP_ESTABLISHED);
    s->set_flags(O_RDWR);
    s->set_src_addr(std::string("\x7f\0\0\x01", 4));
    s->set_src_port(5000);
    s->set_dst_addr(std::string("\x7f\0\0\x01", 4));
    s->set_dst_port(6000);
    s->set_peek_off(-1);
    auto* t = s->mutable_tcp();
    t->set_mss(1460);
    t->set_send_queue("abcdef");
    t->set_unsent(2);
    t->set_max_window(100);
    t->set_snd_wnd(50);
    const FdKindOps* k = fd_kind_ops(images::FD_INET_SK);
    REQUIRE(k);
    REQUIRE(k->validate(e));
    auto refused = [&](auto&& change, const char* why) {
        images::FileEntry bad = e;
        change(*bad.mutable_inet());
        auto st = k->validate(bad);
        INFO(why);
        REQUIRE_FALSE(st);
        return st.error().str();
    };
    CHECK_THAT(refused([](auto& x) { x.mutable_tcp()->set_unsent(7); }, "unsent"), Catch::Contains("never sent"));
    CHECK_THAT(refused([](auto& x) { x.mutable_tcp()->set_rcv_wscale(15); }, "wscale"), Catch::Contains("window scale"));
    CHECK_THAT(refused([](auto& x) { x.mutable_tcp()->set_mss(0); }, "mss"), Catch::Contains("MSS"));
    CHECK_THAT(refused([](auto& x) { x.mutable_tcp()->set_buf_lock(4); }, "buf_lock"), Catch::Contains("SO_BUF_LOCK"));
    CHECK_THAT(refused([](auto& x) { x.mutable_tcp()->set_snd_wnd(101); }, "window"), Catch::Contains("largest window"));
    CHECK_THAT(refused([](auto& x) { x.clear_tcp(); }, "no repair data"), Catch::Contains("repair data"));
    CHECK_THAT(refused([](auto& x) { x.set_dst_port(0); }, "no peer"), Catch::Contains("both ports"));
    CHECK_THAT(refused([](auto& x) { x.set_state(TCP_LISTEN); }, "listener with repair data"),
               Catch::Contains("repair data"));
}
