// The migration transport: framing, the mutual handshake, and what it refuses. A relay
// thread sits between client and server and can alter, replay, drop or cut the
// client's frames, as an attacker on the wire could.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>

#include <catch2/catch.hpp>

#include "migrate/net/channel.h"

using namespace criu;

namespace {

struct Pair {
    UniqueFd a, b;
};
Pair socket_pair() {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

AuthKey key_of(char c, size_t n = 32) { return *AuthKey::from_bytes(std::vector<uint8_t>(n, uint8_t(c))); }

bool read_n(int fd, uint8_t* p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, p + got, n - got);
        if (r <= 0)
            return false;
        got += size_t(r);
    }
    return true;
}
void write_n(int fd, const uint8_t* p, size_t n) {
    while (n) {
        ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
        if (r <= 0)
            return;
        p += r;
        n -= size_t(r);
    }
}

// What the relay does to the client's frame number `index` (0 = hello, 1 = response,
// 2 = first session message).
enum class Act { pass, flip, replay, drop, truncate, oversize };
struct Tamper {
    int index = -1;
    Act act = Act::pass;
    size_t offset = 0;  // flip: byte within the frame
};

// client <-> relay <-> server. Frames from the client are parsed (header length plus the
// tag of the phase) so that the relay can act on whole frames.
class Relay {
public:
    Relay(UniqueFd from_client, UniqueFd to_server, Tamper t) : c_(std::move(from_client)), s_(std::move(to_server)) {
        up_ = std::thread([this, t] { upstream(t); });
        down_ = std::thread([this] { downstream(); });
    }
    ~Relay() {
        up_.join();
        down_.join();
    }

private:
    void upstream(Tamper t) {
        for (int k = 0;; ++k) {
            std::vector<uint8_t> f(kFrameHeaderBytes);
            if (!read_n(c_.get(), f.data(), f.size()))
                break;
            uint32_t len;
            std::memcpy(&len, f.data() + 8, 4);
            size_t tag = k < 2 ? kHandshakeTagBytes : kSessionTagBytes;
            if (len > kMaxPayload)
                break;
            f.resize(kFrameHeaderBytes + len + tag);
            if (!read_n(c_.get(), f.data() + kFrameHeaderBytes, len + tag))
                break;
            if (k != t.index || t.act == Act::pass) {
                write_n(s_.get(), f.data(), f.size());
                last_ = f;
                continue;
            }
            if (t.act == Act::flip) {
                f[t.offset % f.size()] ^= 0x40;
                write_n(s_.get(), f.data(), f.size());
            } else if (t.act == Act::replay) {
                write_n(s_.get(), last_.data(), last_.size());  // the previous frame again
            } else if (t.act == Act::drop) {
                // nothing: the next frame arrives with a sequence number too far
            } else if (t.act == Act::truncate) {
                write_n(s_.get(), f.data(), f.size() / 2);
                break;
            } else if (t.act == Act::oversize) {
                uint32_t huge = 0x7fffffff;
                std::memcpy(f.data() + 8, &huge, 4);
                write_n(s_.get(), f.data(), kFrameHeaderBytes);
                break;
            }
        }
        ::shutdown(s_.get(), SHUT_WR);
    }
    void downstream() {
        uint8_t buf[65536];
        for (;;) {
            ssize_t n = ::read(s_.get(), buf, sizeof buf);
            if (n <= 0)
                break;
            write_n(c_.get(), buf, size_t(n));
        }
        ::shutdown(c_.get(), SHUT_RDWR);
    }
    UniqueFd c_, s_;
    std::vector<uint8_t> last_;
    std::thread up_, down_;
};

struct ServerResult {
    bool handshake_ok = false;
    std::vector<Message> got;
    std::optional<Error> error;
};

ChannelOptions quick() {
    ChannelOptions o;
    o.io_timeout_ms = 3000;
    o.handshake_timeout_ms = 3000;
    return o;
}

// Runs a server on `fd` that receives until the first error or a bye.
std::thread serve(UniqueFd fd, const AuthKey& key, ServerResult& out, Log& log,
                  ChannelPurpose purpose = ChannelPurpose::migrate) {
    return std::thread([fd = std::move(fd), &key, &out, &log, purpose]() mutable {
        auto ch = Channel::server(std::move(fd), "client", key, purpose, log, quick());
        if (!ch) {
            out.error = ch.error();
            return;
        }
        out.handshake_ok = true;
        for (;;) {
            auto m = ch->recv();
            if (!m) {
                out.error = m.error();
                return;
            }
            if (m->type == MsgType::bye)
                return;
            out.got.push_back(std::move(*m));
        }
    });
}

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = uint8_t(seed + i * 7 + (i >> 12));
    return v;
}

// The client's side of a tampered session: handshake, three messages, bye.
struct Run {
    ServerResult server;
    std::optional<Error> client_error;
    bool client_handshake_ok = false;
};
Run run_session(const AuthKey& ckey, const AuthKey& skey, Tamper t,
                ChannelPurpose cp = ChannelPurpose::migrate, ChannelPurpose sp = ChannelPurpose::migrate) {
    Log log(0);
    Run r;
    Pair cl = socket_pair(), sv = socket_pair();
    std::thread st = serve(std::move(sv.a), skey, r.server, log, sp);
    {
        Relay relay(std::move(cl.b), std::move(sv.b), t);
        auto ch = Channel::client(std::move(cl.a), "server", ckey, cp, log, quick());
        if (ch) {
            r.client_handshake_ok = true;
            auto a = bytes(100, 1), b = bytes(4 << 20, 2), c = bytes(10, 3);
            Status s1 = ch->send(MsgType::file_data, a);
            Status s2 = s1 ? ch->send(MsgType::pages_data, c, b) : s1;
            Status s3 = s2 ? ch->send(MsgType::file_data, c) : s2;
            if (s3)
                (void)ch->send(MsgType::bye, {});
        } else {
            r.client_error = ch.error();
        }
        st.join();
        // the client's channel closes here, so the relay ends
    }
    return r;
}

}  // namespace

TEST_CASE("channel: the right key gets every message through, intact and in order", "[net]") {
    auto k = key_of('k');
    Run r = run_session(k, k, {});
    REQUIRE(r.client_handshake_ok);
    REQUIRE(r.server.handshake_ok);
    REQUIRE_FALSE(r.server.error);
    REQUIRE(r.server.got.size() == 3);
    CHECK(r.server.got[0].type == MsgType::file_data);
    CHECK(std::ranges::equal(r.server.got[0].payload, bytes(100, 1)));
    std::vector<uint8_t> want = bytes(10, 3);
    auto big = bytes(4 << 20, 2);
    want.insert(want.end(), big.begin(), big.end());
    CHECK(r.server.got[1].type == MsgType::pages_data);
    CHECK(std::ranges::equal(r.server.got[1].payload, want));
    CHECK(std::ranges::equal(r.server.got[2].payload, bytes(10, 3)));
}

TEST_CASE("channel: a wrong key is refused on both sides before any message", "[net]") {
    Run r = run_session(key_of('a'), key_of('b'), {});
    CHECK_FALSE(r.server.handshake_ok);
    REQUIRE(r.server.error);
    CHECK(r.server.error->err() == EACCES);
    CHECK_THAT(r.server.error->str(), Catch::Contains("fails authentication"));
    CHECK_FALSE(r.client_handshake_ok);
    REQUIRE(r.client_error);
    CHECK(r.server.got.empty());
    // The public key of an unauthenticated page server does not open a keyed server.
    Run r2 = run_session(AuthKey::insecure(), key_of('b'), {});
    CHECK_FALSE(r2.server.handshake_ok);
    CHECK(r2.server.got.empty());
}

TEST_CASE("channel: a server of another purpose refuses the connection", "[net]") {
    auto k = key_of('k');
    Run r = run_session(k, k, {}, ChannelPurpose::page_server, ChannelPurpose::migrate);
    CHECK_FALSE(r.server.handshake_ok);
    REQUIRE(r.server.error);
    CHECK_THAT(r.server.error->str(), Catch::Contains("purpose"));
    CHECK_FALSE(r.client_handshake_ok);
}

TEST_CASE("channel: an altered byte anywhere in a frame is refused", "[net]") {
    auto k = key_of('k');
    // payload of the first session message, its tag, its header's sequence number, its type
    for (size_t off : {size_t(kFrameHeaderBytes + 5), size_t(kFrameHeaderBytes + 100 + 3), size_t(17), size_t(6)}) {
        CAPTURE(off);
        Run r = run_session(k, k, {2, Act::flip, off});
        REQUIRE(r.server.handshake_ok);
        REQUIRE(r.server.error);
        CHECK(r.server.got.empty());
    }
    // in the hello and in the response: the handshake fails
    for (int idx : {0, 1}) {
        Run r = run_session(k, k, {idx, Act::flip, kFrameHeaderBytes + 10});
        CHECK_FALSE(r.server.handshake_ok);
        REQUIRE(r.server.error);
        CHECK(r.server.error->err() == EACCES);
        CHECK_FALSE(r.client_handshake_ok);
    }
    Run p = run_session(k, k, {3, Act::flip, kFrameHeaderBytes + 1000});
    REQUIRE(p.server.error);
    CHECK(p.server.error->err() == EACCES);
    CHECK(p.server.got.size() == 1);  // what came before the altered frame was fine
}

TEST_CASE("channel: a replayed or dropped message is refused by its sequence number", "[net]") {
    auto k = key_of('k');
    Run r = run_session(k, k, {3, Act::replay});
    REQUIRE(r.server.error);
    CHECK(r.server.error->err() == EPROTO);
    CHECK_THAT(r.server.error->str(), Catch::Contains("sequence number 2 where 3 was due"));
    CHECK(r.server.got.size() == 1);
    Run d = run_session(k, k, {2, Act::drop});
    REQUIRE(d.server.error);
    CHECK_THAT(d.server.error->str(), Catch::Contains("replayed, reordered or dropped"));
    CHECK(d.server.got.empty());
}

TEST_CASE("channel: a truncated stream and an oversized length are refused", "[net]") {
    auto k = key_of('k');
    Run t = run_session(k, k, {3, Act::truncate});
    REQUIRE(t.server.error);
    CHECK(t.server.error->err() == ECONNRESET);
    CHECK(t.server.got.size() == 1);
    Run o = run_session(k, k, {2, Act::oversize});
    REQUIRE(o.server.error);
    CHECK(o.server.error->err() == EMSGSIZE);
    CHECK_THAT(o.server.error->str(), Catch::Contains("over its cap"));
}

TEST_CASE("channel: a silent peer times out, a closed one is reported", "[net]") {
    Log log(0);
    auto k = key_of('k');
    {
        Pair p = socket_pair();
        ChannelOptions o = quick();
        o.handshake_timeout_ms = 200;
        auto t0 = std::chrono::steady_clock::now();
        auto ch = Channel::server(std::move(p.a), "silent", k, ChannelPurpose::migrate, log, o);
        REQUIRE_FALSE(ch);
        CHECK(ch.error().err() == ETIMEDOUT);
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
    }
    {
        Pair p = socket_pair();
        p.b.reset();
        auto ch = Channel::client(std::move(p.a), "gone", k, ChannelPurpose::migrate, log, quick());
        REQUIRE_FALSE(ch);
    }
}

TEST_CASE("channel: garbage instead of a frame is refused", "[net]") {
    Log log(0);
    Pair p = socket_pair();
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    write_n(p.b.get(), reinterpret_cast<const uint8_t*>(junk.data()), junk.size());
    auto ch = Channel::server(std::move(p.a), "junk", key_of('k'), ChannelPurpose::migrate, log, quick());
    REQUIRE_FALSE(ch);
    CHECK(ch.error().err() == EBADMSG);
    CHECK_THAT(ch.error().str(), Catch::Contains("bad magic"));
}

TEST_CASE("channel: the sender refuses a message over its type's cap", "[net]") {
    auto k = key_of('k');
    Log log(0);
    Pair p = socket_pair();
    ServerResult sr;
    std::thread st = serve(std::move(p.b), k, sr, log);
    auto ch = Channel::client(std::move(p.a), "server", k, ChannelPurpose::migrate, log, quick());
    REQUIRE(ch);
    auto big = bytes(kMaxPayload + 1, 1);
    Status s = ch->send(MsgType::pages_data, big);
    REQUIRE_FALSE(s);
    CHECK(s.error().err() == EMSGSIZE);
    auto ctl = bytes(300, 1);
    CHECK_FALSE(ch->send(MsgType::commit, ctl));
    REQUIRE(ch->send(MsgType::bye, {}));
    st.join();
    CHECK(sr.got.empty());
    CHECK_FALSE(sr.error);
}

TEST_CASE("auth key file: private, long enough, regular", "[net]") {
    char dir[] = "/tmp/criu-key-XXXXXX";
    REQUIRE(mkdtemp(dir));
    std::string path = std::string(dir) + "/key";
    auto write_key = [&](size_t n, mode_t mode) {
        ::unlink(path.c_str());
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
        REQUIRE(fd >= 0);
        std::vector<uint8_t> b(n, 0x5a);
        REQUIRE(::write(fd, b.data(), n) == ssize_t(n));
        ::fchmod(fd, mode);
        ::close(fd);
    };
    write_key(32, 0600);
    auto k = AuthKey::load(path);
    REQUIRE(k);
    CHECK(k->bytes().size() == 32);
    write_key(32, 0644);
    auto open_mode = AuthKey::load(path);
    REQUIRE_FALSE(open_mode);
    CHECK_THAT(open_mode.error().str(), Catch::Contains("chmod 600"));
    write_key(8, 0600);
    auto shrt = AuthKey::load(path);
    REQUIRE_FALSE(shrt);
    CHECK_THAT(shrt.error().str(), Catch::Contains(path));
    CHECK_FALSE(AuthKey::load(std::string(dir)));
    CHECK_FALSE(AuthKey::load(std::string(dir) + "/missing"));
    ::unlink(path.c_str());
    ::rmdir(dir);
}

TEST_CASE("endpoints: numeric ADDR:PORT only", "[net]") {
    CHECK(Endpoint::parse("10.0.0.2:7000")->text == "10.0.0.2:7000");
    CHECK(Endpoint::parse("[::1]:80")->text == "[::1]:80");
    CHECK_FALSE(Endpoint::parse("localhost:7000"));
    CHECK_FALSE(Endpoint::parse("10.0.0.2"));
    CHECK_FALSE(Endpoint::parse("10.0.0.2:0"));
    CHECK_FALSE(Endpoint::parse("10.0.0.2:70000"));
    CHECK_FALSE(Endpoint::parse("10.0.0.2:7x"));
    CHECK_FALSE(Endpoint::from("", 7000));
}

// The source's sending thread: frames are sealed on the caller's thread and written by the
// channel's own, so order, sequence numbers and tags must come through exactly as before.
TEST_CASE("channel: with the send thread, large frames arrive intact and in order", "[net]") {
    Log log(0);
    auto k = key_of('t');
    ServerResult server;
    Pair p = socket_pair();
    std::thread st = serve(std::move(p.b), k, server, log);
    {
        auto ch = Channel::client(std::move(p.a), "server", k, ChannelPurpose::migrate, log, quick());
        REQUIRE(ch);
        ch->start_send_thread();
        for (int i = 0; i < 12; ++i) {
            auto head = bytes(13, uint8_t(i));
            auto body = bytes(size_t(1 + i) << 18, uint8_t(100 + i));  // 256 KiB .. 3 MiB
            REQUIRE(ch->send(MsgType::pages_data, head, body));
            REQUIRE(ch->send(MsgType::pages_zero, bytes(12, uint8_t(i))));
        }
        REQUIRE(ch->flush());
        REQUIRE(ch->send(MsgType::bye, {}));
    }  // the channel's end writes out what is queued
    st.join();
    REQUIRE_FALSE(server.error);
    REQUIRE(server.got.size() == 24);
    for (int i = 0; i < 12; ++i) {
        std::vector<uint8_t> want = bytes(13, uint8_t(i));
        auto body = bytes(size_t(1 + i) << 18, uint8_t(100 + i));
        want.insert(want.end(), body.begin(), body.end());
        CHECK(server.got[2 * i].type == MsgType::pages_data);
        CHECK(std::ranges::equal(server.got[2 * i].payload, want));
        CHECK(server.got[2 * i + 1].type == MsgType::pages_zero);
        CHECK(std::ranges::equal(server.got[2 * i + 1].payload, bytes(12, uint8_t(i))));
    }
}

TEST_CASE("channel: a peer that goes away breaks the send thread's channel with a clear error", "[net]") {
    Log log(0);
    auto k = key_of('t');
    Pair p = socket_pair();
    std::thread st([fd = std::move(p.b), &k, &log]() mutable {
        auto ch = Channel::server(std::move(fd), "client", k, ChannelPurpose::migrate, log, quick());
        (void)ch;  // handshake only; the connection closes here
    });
    auto ch = Channel::client(std::move(p.a), "server", k, ChannelPurpose::migrate, log, quick());
    REQUIRE(ch);
    st.join();
    ch->start_send_thread();
    auto body = bytes(4 << 20, 9);
    Status last;
    for (int i = 0; i < 50 && last; ++i)
        last = ch->send(MsgType::pages_data, bytes(13, 0), body);
    if (last)
        last = ch->flush();
    REQUIRE_FALSE(last);
    CHECK((last.error().err() == EPIPE || last.error().err() == ECONNRESET));
    CHECK(ch->broken());
    CHECK_FALSE(ch->send(MsgType::bye, {}));
}
