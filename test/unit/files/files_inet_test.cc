// TCP and UDP sockets: an established connection stops the dump in pre-flight without
// --tcp-established while the process runs on (files_tcp_test.cc has the connections), and hostile
// InetSocket records are refused before anything is created.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"
#include "images/image_io.h"
#include "proto/files.pb.h"

using namespace criu;
using namespace criu::test;

TEST_CASE("an established TCP connection is a pre-flight blocker naming pid, fd and both ends") {
    UniqueFd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    REQUIRE(bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(l.get(), 1) == 0);
    REQUIRE(getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &alen) == 0);
    pid_t pid = spawn_ready_child([&] {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        return c >= 0 && connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && place(c, 5);
    });
    REQUIRE(pid > 0);
    struct Reap {
        pid_t pid;
        ~Reap() { kill_child(pid); }
    } reap{pid};
    UniqueFd server(accept(l.get(), nullptr, nullptr));
    REQUIRE(server);
    Options opts;
    Log log(0);
    auto st = preflight_fds(pid, opts, log);
    REQUIRE_FALSE(st);
    std::string port = fmt::format("127.0.0.1:{}", ntohs(a.sin_port));
    CHECK_THAT(st.error().str(), Catch::Contains(fmt::format("pid {} fd 5: established TCP connection", pid)) &&
                                     Catch::Contains("-> " + port) && Catch::Contains("--tcp-established"));
    // The connection is untouched: data still flows.
    CHECK(write(server.get(), "x", 1) == 1);
    int status = 0;
    CHECK(waitpid(pid, &status, WNOHANG) == 0);
    TempDir images;
    FilesDumper dumper;
    auto d = dumper.dump_process_fds(pid, opts, log, images.fd());
    REQUIRE_FALSE(d);
    CHECK_THAT(d.error().str(), Catch::Contains("established TCP connection"));
}

namespace {

constexpr pid_t kPid = 4213;

images::FileEntry udp_entry() {
    images::FileEntry e;
    e.set_id(1);
    e.set_kind(images::FD_INET_SK);
    auto* s = e.mutable_inet();
    s->set_family(AF_INET);
    s->set_protocol(IPPROTO_UDP);
    s->set_state(7);
    s->set_flags(O_RDWR);
    in_addr lo{htonl(INADDR_LOOPBACK)};
    s->set_src_addr(std::string(reinterpret_cast<const char*>(&lo), 4));
    s->set_src_port(5000);
    s->set_peek_off(-1);
    auto* d = s->add_queue();
    d->set_data("hello");
    d->set_src_addr(s->src_addr());
    d->set_src_port(6000);
    return e;
}

std::string load(const images::FileEntry& e) {
    TempDir dir;
    auto w = ImageWriter::create_at(dir.fd(), image_file_name(ImageType::Files), ImageType::Files);
    REQUIRE(w);
    REQUIRE(w->write(e));
    REQUIRE(w->close());
    images::FdEntry fe;
    fe.set_fd(3);
    fe.set_file_id(e.id());
    fe.set_kind(e.kind());
    auto f = ImageWriter::create_at(dir.fd(), image_file_name(ImageType::Fdinfo, kPid), ImageType::Fdinfo);
    REQUIRE(f);
    REQUIRE(f->write(fe));
    REQUIRE(f->close());
    auto p = ImageWriter::create_at(dir.fd(), image_file_name(ImageType::PipeData), ImageType::PipeData);
    REQUIRE(p);
    REQUIRE(p->close());
    Log log(0);
    auto r = FilesRestorer::load(dir.fd(), {kPid}, log);
    return r ? "" : r.error().str();
}

}  // namespace

TEST_CASE("hostile inet socket records are refused before anything is created") {
    images::FileEntry e = udp_entry();
    REQUIRE(load(e) == "");
    auto& s = *e.mutable_inet();
    SECTION("no InetSocket data") {
        e.clear_inet();
        CHECK_THAT(load(e), Catch::Contains("inet socket entry without InetSocket data"));
    }
    SECTION("unknown family") {
        s.set_family(AF_UNIX);
        CHECK_THAT(load(e), Catch::Contains("inet socket of family 1"));
    }
    SECTION("address of the wrong size") {
        s.set_src_addr("abc");
        CHECK_THAT(load(e), Catch::Contains("addresses of 3 and 0 bytes for family 2"));
    }
    SECTION("port above 65535") {
        s.set_src_port(70000);
        CHECK_THAT(load(e), Catch::Contains("port 70000 or 0 is above 65535"));
    }
    SECTION("raw protocol") {
        s.set_protocol(IPPROTO_RAW);
        CHECK_THAT(load(e), Catch::Contains("protocol 255"));
    }
    SECTION("an established TCP state without its repair data") {
        s.set_protocol(IPPROTO_TCP);
        s.clear_queue();
        s.set_state(1);
        CHECK_THAT(load(e), Catch::Contains("repair data missing for a TCP socket in state ESTABLISHED"));
    }
    SECTION("a half-closed TCP state") {
        s.set_protocol(IPPROTO_TCP);
        s.clear_queue();
        s.set_state(8);  // CLOSE_WAIT
        CHECK_THAT(load(e), Catch::Contains("TCP state 8 cannot be restored"));
    }
    SECTION("connected without a peer") {
        s.set_state(1);
        CHECK_THAT(load(e), Catch::Contains("connected state and peer port 0 disagree"));
    }
    SECTION("a datagram from port 0") {
        s.mutable_queue(0)->set_src_port(0);
        CHECK_THAT(load(e), Catch::Contains("a queued datagram of 5 bytes from 127.0.0.1:0"));
    }
    SECTION("an oversized datagram") {
        s.mutable_queue(0)->set_data(std::string(70000, 'x'));
        CHECK_THAT(load(e), Catch::Contains("a queued datagram of 70000 bytes"));
    }
    SECTION("a huge buffer") {
        s.set_rcvbuf(1u << 31);
        CHECK_THAT(load(e), Catch::Contains("buffer sizes 2147483648"));
    }
}
