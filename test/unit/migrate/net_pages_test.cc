// Pages, image files and chunks over the channel: what the page server and `criu serve`
// receive is exactly what was sent, and malformed or out-of-order input is refused with
// nothing of it written.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <filesystem>
#include <thread>

#include <catch2/catch.hpp>

#include "images/page_reader.h"
#include "migrate/cache/byte_io.h"
#include "migrate/live/file_transfer.h"
#include "migrate/net/page_transfer.h"
#include "migrate/net/remote_chunks.h"

using namespace criu;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/criu-net-test-XXXXXX";
        REQUIRE(mkdtemp(t));
        path = t;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A connected pair of channels (handshake done on two threads).
struct Link {
    Log log{0};
    std::optional<Channel> client, server;
    Link() {
        int sv[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        auto key = *AuthKey::from_bytes(std::vector<uint8_t>(32, 7));
        std::optional<Expected<Channel>> s;
        std::thread t([&] { s = Channel::server(UniqueFd(sv[1]), "client", key, ChannelPurpose::migrate, log); });
        auto c = Channel::client(UniqueFd(sv[0]), "server", key, ChannelPurpose::migrate, log);
        t.join();
        REQUIRE(c);
        REQUIRE(*s);
        client.emplace(std::move(*c));
        server.emplace(std::move(**s));
    }
};

std::vector<uint8_t> pages(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n * 4096);
    for (size_t i = 0; i < v.size(); ++i)
        v[i] = uint8_t(seed * 31 + i / 4096 * 7 + i % 251);
    return v;
}

// Runs the receiving side until `stop_after` messages or an error.
Status receive(Channel& ch, PageReceiver& rx, FileReceiver* files, ChunkReceiver* chunks, int stop_after) {
    for (int i = 0; i < stop_after; ++i) {
        Message m = TRY(ch.recv(2000));
        if (files && m.type == MsgType::file_data) {
            TRY_VOID(files->handle(m));
            continue;
        }
        if (chunks && TRY(chunks->handle(ch, m, rx)))
            continue;
        if (!TRY(rx.handle(ch, m)))
            return failf(EPROTO, "unexpected {}", msg_type_name(m.type));
    }
    return {};
}

}  // namespace

TEST_CASE("pages over the channel: the receiver's images read back as sent", "[net]") {
    Link l;
    TempDir d;
    ImageDir dir = *ImageDir::create(d.path);
    PageReceiverOptions ro;
    ro.writer_thread = GENERATE(false, true);  // criu serve writes on a thread of its own
    PageReceiver rx(dir, l.log, ro);
    auto a = pages(3, 1), b = pages(1500, 2);  // b is split over two messages
    Status got;
    std::thread t([&] { got = receive(*l.server, rx, nullptr, nullptr, 6); });
    {
        auto sink = RemotePageSink::open(*l.client, 42, {});
        REQUIRE(sink);
        REQUIRE((*sink)->add_pages(0x10000, a.data(), 3));
        REQUIRE((*sink)->add_zero(0x13000, 2));
        REQUIRE((*sink)->add_pages(0x100000, b.data(), 1500));
        REQUIRE((*sink)->finish());
        CHECK((*sink)->stats().pages_present == 1503);
    }
    t.join();
    REQUIRE(got);
    auto pr = PageReader::open(dir, 42);
    REQUIRE(pr);
    std::vector<uint8_t> back(1500 * 4096);
    REQUIRE(pr->read_range(0x100000, 1500, back.data()));
    CHECK(back == b);
    REQUIRE(pr->read_range(0x10000, 3, back.data()));
    CHECK(std::memcmp(back.data(), a.data(), a.size()) == 0);
}

TEST_CASE("pages over the channel: out-of-order and malformed ranges are refused", "[net]") {
    Link l;
    TempDir d;
    ImageDir dir = *ImageDir::create(d.path);
    PageReceiver rx(dir, l.log);
    auto send = [&](MsgType t, uint64_t vaddr, uint32_t nr, size_t data_pages) {
        ByteWriter w;
        w.u64(vaddr);
        w.u32(nr);
        if (t == MsgType::pages_data)
            w.u8(0);
        auto data = pages(data_pages, 3);
        REQUIRE(l.client->send(t, w.bytes(), data));
    };
    SECTION("pages before pages_open") {
        send(MsgType::pages_data, 0x1000, 1, 1);
        auto st = receive(*l.server, rx, nullptr, nullptr, 1);
        REQUIRE_FALSE(st);
        CHECK_THAT(st.error().str(), Catch::Contains("before pages_open"));
    }
    SECTION("bad ranges") {
        ByteWriter open;
        open.u64(7);
        open.u8(0);
        REQUIRE(l.client->send(MsgType::pages_open, open.bytes()));
        REQUIRE(receive(*l.server, rx, nullptr, nullptr, 1));
        send(MsgType::pages_data, 0x5000, 2, 2);
        REQUIRE(receive(*l.server, rx, nullptr, nullptr, 1));
        send(MsgType::pages_data, 0x4000, 1, 1);  // below the previous range
        auto below = receive(*l.server, rx, nullptr, nullptr, 1);
        REQUIRE_FALSE(below);
        CHECK_THAT(below.error().str(), Catch::Contains("below the end of the previous one"));
        send(MsgType::pages_data, 0x9001, 1, 1);  // not aligned
        CHECK_FALSE(receive(*l.server, rx, nullptr, nullptr, 1));
        send(MsgType::pages_data, 0xa000, 3, 2);  // says 3 pages, carries 2
        auto shrt = receive(*l.server, rx, nullptr, nullptr, 1);
        REQUIRE_FALSE(shrt);
        CHECK_THAT(shrt.error().str(), Catch::Contains("carries"));
        send(MsgType::pages_zero, (1ull << 47) - 4096, 2, 0);  // past the end of user space
        CHECK_FALSE(receive(*l.server, rx, nullptr, nullptr, 1));
        rx.discard();
        CHECK_FALSE(std::filesystem::exists(d.path + "/pages-7.img"));
    }
    SECTION("a pid that is not one") {
        ByteWriter open;
        open.u64(uint64_t(-5));
        open.u8(0);
        REQUIRE(l.client->send(MsgType::pages_open, open.bytes()));
        CHECK_FALSE(receive(*l.server, rx, nullptr, nullptr, 1));
    }
}

TEST_CASE("image files over the channel: plain names, in order, whole", "[net]") {
    CHECK(FileReceiver::valid_name("core-42.img"));
    CHECK(FileReceiver::valid_name("ghost-file-3.raw"));
    CHECK_FALSE(FileReceiver::valid_name("../etc/passwd"));
    CHECK_FALSE(FileReceiver::valid_name("a/b"));
    CHECK_FALSE(FileReceiver::valid_name(".hidden"));
    CHECK_FALSE(FileReceiver::valid_name("pages-42.img"));
    CHECK_FALSE(FileReceiver::valid_name(""));
    CHECK_FALSE(FileReceiver::valid_name(std::string(300, 'a')));

    Link l;
    TempDir src, dst;
    auto write_file = [&](const std::string& name, size_t size) {
        int fd = ::open((src.path + "/" + name).c_str(), O_WRONLY | O_CREAT, 0600);
        auto data = pages((size + 4095) / 4096, uint8_t(size));
        REQUIRE(::write(fd, data.data(), size) == ssize_t(size));
        ::close(fd);
    };
    write_file("inventory.img", 100);
    write_file("core-1.img", 5 << 20);  // two pieces
    write_file("empty.img", 0);
    write_file("dump.log", 10);  // logs stay home
    int dfd = ::open(dst.path.c_str(), O_DIRECTORY | O_RDONLY);
    FileReceiver files(dfd);
    ImageDir dir = *ImageDir::open(dst.path);
    PageReceiver rx(dir, l.log);
    Status got;
    std::thread t([&] { got = receive(*l.server, rx, &files, nullptr, 4); });
    auto sent = send_image_files(*l.client, src.path);
    t.join();
    REQUIRE(sent);
    REQUIRE(got);
    CHECK(*sent == 100 + (5 << 20));
    REQUIRE(files.check_complete());
    CHECK(std::filesystem::file_size(dst.path + "/core-1.img") == 5u << 20);
    CHECK(std::filesystem::exists(dst.path + "/empty.img"));
    CHECK_FALSE(std::filesystem::exists(dst.path + "/dump.log"));

    // A name with a slash, and a piece that does not follow what arrived.
    auto piece = [&](const std::string& name, uint64_t off, uint64_t total, uint8_t last, size_t len) {
        ByteWriter h;
        h.str(name);
        h.u64(off);
        h.u64(total);
        h.u8(last);
        std::vector<uint8_t> data(len, 1);
        REQUIRE(l.client->send(MsgType::file_data, h.bytes(), data));
        return receive(*l.server, rx, &files, nullptr, 1);
    };
    CHECK_FALSE(piece("../x", 0, 1, 1, 1));
    CHECK_FALSE(piece("core-1.img", 0, 1, 1, 1));  // exists: created exclusively
    REQUIRE(piece("mm-1.img", 0, 10, 0, 4));
    CHECK_FALSE(piece("mm-1.img", 8, 10, 1, 2));  // a gap
    CHECK_FALSE(piece("fs-1.img", 0, 4, 1, 6));   // beyond the announced size
    CHECK_FALSE(files.check_complete());          // mm-1.img is incomplete
    ::close(dfd);
}

TEST_CASE("chunks over the channel: only what the destination lacks is sent, checked by key", "[net]") {
    Link l;
    TempDir src, dst, img;
    ImageDir dir = *ImageDir::create(img.path);
    PageReceiver rx(dir, l.log);
    ChunkReceiver chunks(dst.path + "/chunks", l.log);
    Status served;
    std::thread t([&] {
        for (;;) {
            auto m = l.server->recv(3000);
            if (!m) {
                served = std::unexpected(m.error());
                return;
            }
            if (m->type == MsgType::bye)
                return;
            auto h = chunks.handle(*l.server, *m, rx);
            if (!h) {
                served = std::unexpected(h.error());
                return;
            }
            if (!*h) {
                auto p = rx.handle(*l.server, *m);
                if (!p || !*p) {
                    served = fail(EPROTO, "unexpected message");
                    return;
                }
            }
        }
    });
    NetChunkRemote remote(*l.client);
    ChunkCacheOptions co;
    co.mode = CacheMode::writethrough;
    co.remote = &remote;
    co.direct_io = false;
    auto a = pages(40, 5), zeros = std::vector<uint8_t>(32 * 4096, 0);
    {
        auto cache = ChunkCache::open(src.path, co);
        REQUIRE(cache);
        auto sink = CachedPageSink::open(*l.client, **cache, 9, {});
        REQUIRE(sink);
        REQUIRE((*sink)->add_pages(0x200000, a.data(), 40));
        REQUIRE((*sink)->add_pages(0x400000, a.data(), 40));  // the same content again: no chunk sent
        REQUIRE((*sink)->add_pages(0x800000, zeros.data(), 32));  // zero chunks: never sent
        REQUIRE((*sink)->finish());
    }
    CHECK(remote.chunks_sent() == 3);  // 40 pages = 16 + 16 + 8
    CHECK(remote.raw_bytes_sent() == 40 * 4096);
    REQUIRE(l.client->send(MsgType::bye, {}));
    t.join();
    REQUIRE(served);
    auto pr = PageReader::open(dir, 9);
    REQUIRE(pr);
    std::vector<uint8_t> back(40 * 4096);
    REQUIRE(pr->read_range(0x400000, 40, back.data()));
    CHECK(back == a);
    REQUIRE(pr->read_range(0x800000, 32, back.data()));
    CHECK(std::all_of(back.begin(), back.begin() + 32 * 4096, [](uint8_t b) { return b == 0; }));
}
