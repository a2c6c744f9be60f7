#include "migrate/net/channel.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>

#include "migrate/cache/byte_io.h"

namespace criu {

namespace {

constexpr size_t kNonceBytes = 32;
constexpr size_t kMacBytes = 32;
constexpr uint32_t kControlCap = 64 << 10;

using Mac = std::array<uint8_t, kMacBytes>;

Mac hmac(std::span<const uint8_t> key, std::span<const uint8_t> data) {
    Mac out{};
    unsigned len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(), &len);
    return out;
}

std::vector<uint8_t> concat(std::initializer_list<std::span<const uint8_t>> parts) {
    std::vector<uint8_t> v;
    for (auto p : parts)
        v.insert(v.end(), p.begin(), p.end());
    return v;
}

std::span<const uint8_t> text(const char* s) { return {reinterpret_cast<const uint8_t*>(s), std::strlen(s)}; }

struct Header {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t length;
    uint32_t reserved;
    uint64_t seq;
};
static_assert(sizeof(Header) == kFrameHeaderBytes);

bool is_handshake_type(MsgType t) {
    return t == MsgType::hello || t == MsgType::challenge || t == MsgType::response;
}

}  // namespace

uint32_t max_payload(MsgType type) {
    switch (type) {
    case MsgType::hello:
    case MsgType::challenge:
    case MsgType::response:
    case MsgType::welcome:
    case MsgType::bye:
    case MsgType::ready:
    case MsgType::restore:
    case MsgType::commit:
    case MsgType::done:
    case MsgType::released:
    case MsgType::pages_close:
        return 256;
    case MsgType::error:
        return 8192;
    case MsgType::pages_open:
    case MsgType::pages_remote:
    case MsgType::page_request:
    case MsgType::pages_zero:
    case MsgType::pages_parent:
    case MsgType::pages_done:
    case MsgType::migrate_begin:
    case MsgType::image_set:
    case MsgType::restored:
    case MsgType::chunk_put_ack:
        return kControlCap;
    case MsgType::pages_data:
    case MsgType::file_data:
    case MsgType::chunk_have:
    case MsgType::chunk_have_reply:
    case MsgType::chunk_put:
    case MsgType::chunk_pages:
    case MsgType::page_reply:
        return kMaxPayload;
    }
    return 0;
}

const char* msg_type_name(MsgType type) {
    switch (type) {
    case MsgType::hello: return "hello";
    case MsgType::challenge: return "challenge";
    case MsgType::response: return "response";
    case MsgType::welcome: return "welcome";
    case MsgType::error: return "error";
    case MsgType::bye: return "bye";
    case MsgType::pages_open: return "pages_open";
    case MsgType::pages_data: return "pages_data";
    case MsgType::pages_zero: return "pages_zero";
    case MsgType::pages_parent: return "pages_parent";
    case MsgType::pages_close: return "pages_close";
    case MsgType::pages_done: return "pages_done";
    case MsgType::migrate_begin: return "migrate_begin";
    case MsgType::ready: return "ready";
    case MsgType::file_data: return "file_data";
    case MsgType::restore: return "restore";
    case MsgType::restored: return "restored";
    case MsgType::commit: return "commit";
    case MsgType::done: return "done";
    case MsgType::image_set: return "image_set";
    case MsgType::released: return "released";
    case MsgType::chunk_have: return "chunk_have";
    case MsgType::chunk_have_reply: return "chunk_have_reply";
    case MsgType::chunk_put: return "chunk_put";
    case MsgType::chunk_put_ack: return "chunk_put_ack";
    case MsgType::chunk_pages: return "chunk_pages";
    case MsgType::pages_remote: return "pages_remote";
    case MsgType::page_request: return "page_request";
    case MsgType::page_reply: return "page_reply";
    }
    return "unknown";
}

struct Channel::Keys {
    Mac prk{}, hs{}, tx{}, rx{};
    bool session = false;
    bool is_client = false;
    EVP_CIPHER_CTX* enc = nullptr;
    EVP_CIPHER_CTX* dec = nullptr;
    ~Keys() {
        EVP_CIPHER_CTX_free(enc);
        EVP_CIPHER_CTX_free(dec);
        OPENSSL_cleanse(prk.data(), prk.size());
        OPENSSL_cleanse(hs.data(), hs.size());
        OPENSSL_cleanse(tx.data(), tx.size());
        OPENSSL_cleanse(rx.data(), rx.size());
    }
    void iv(uint8_t out[12], bool sending, uint64_t seq) const {
        // One key per direction already; the direction byte keeps IVs apart even if not.
        bool c2s = sending == is_client;
        std::memcpy(out, c2s ? "c2s\0" : "s2c\0", 4);
        std::memcpy(out + 4, &seq, 8);
    }
};

// Writes sealed frames in order on a thread of its own. The frames are complete (header,
// ciphertext, tag) when queued, so sequence numbers and keys stay with the sending threads.
struct Channel::SendThread {
    static constexpr size_t kMaxQueued = 3;  // 3 x 4 MiB in flight: enough to overlap, little memory
    int fd;
    int timeout_ms;
    std::mutex m;
    std::condition_variable cv;
    std::deque<Payload> queue;
    std::vector<Payload> spare;  // written frames' buffers, reused
    size_t in_flight = 0;        // queued or being written
    std::optional<Error> error;
    bool stopping = false;
    std::thread thread;

    SendThread(int f, int t) : fd(f), timeout_ms(t) { thread = std::thread([this] { run(); }); }
    ~SendThread() {
        {
            std::lock_guard l(m);
            stopping = true;
        }
        cv.notify_all();
        thread.join();  // after the queue is written out (or skipped after an error)
    }
    void run() {
        for (;;) {
            Payload f;
            bool skip;
            {
                std::unique_lock l(m);
                cv.wait(l, [&] { return stopping || !queue.empty(); });
                if (queue.empty())
                    return;
                f = std::move(queue.front());
                queue.pop_front();
                skip = error.has_value();
            }
            Status st;
            if (!skip) {
                iovec iov{f.data(), f.size()};
                st = write_full(fd, {&iov, 1}, timeout_ms);
            }
            {
                std::lock_guard l(m);
                if (!st && !error)
                    error = std::move(st.error());
                spare.push_back(std::move(f));
                in_flight--;
            }
            cv.notify_all();
        }
    }
    // A buffer for the next frame, once fewer than kMaxQueued are in flight.
    Payload take() {
        std::unique_lock l(m);
        cv.wait(l, [&] { return in_flight < kMaxQueued || error; });
        if (spare.empty())
            return {};
        Payload p = std::move(spare.back());
        spare.pop_back();
        return p;
    }
    void push(Payload f) {
        {
            std::lock_guard l(m);
            queue.push_back(std::move(f));
            in_flight++;
        }
        cv.notify_all();
    }
    std::optional<Error> failed() {
        std::lock_guard l(m);
        return error;
    }
    Status drain() {
        std::unique_lock l(m);
        cv.wait(l, [&] { return in_flight == 0; });
        if (error)
            return std::unexpected(*error);
        return {};
    }
};

Channel::Channel(UniqueFd fd, std::string peer, ChannelOptions opts)
    : fd_(std::move(fd)), peer_(std::move(peer)), opts_(opts), keys_(std::make_unique<Keys>()) {}
Channel::Channel(Channel&&) noexcept = default;
Channel& Channel::operator=(Channel&&) noexcept = default;
Channel::~Channel() = default;

Status Channel::broke(Error e) {
    broken_ = true;
    return std::unexpected(std::move(e));
}

Status Channel::send_frame(MsgType type, std::span<const uint8_t> head, std::span<const uint8_t> body,
                           bool handshake) {
    if (broken_)
        return failf(EPIPE, "the connection to {} is already broken", peer_);
    size_t len = head.size() + body.size();
    if (len > max_payload(type))
        return failf(EMSGSIZE, "{} message of {} bytes is over its cap of {}", msg_type_name(type), len,
                     max_payload(type));
    Header h{kFrameMagic, kWireVersion, static_cast<uint16_t>(type), static_cast<uint32_t>(len), 0, send_seq_};
    const auto* hb = reinterpret_cast<const uint8_t*>(&h);
    if (handshake) {
        std::vector<uint8_t> all = concat({{hb, sizeof h}, head, body});
        Mac tag = hmac(keys_->hs, all);
        all.insert(all.end(), tag.begin(), tag.end());
        iovec iov{all.data(), all.size()};
        Status st = write_full(fd_.get(), {&iov, 1}, opts_.io_timeout_ms);
        if (!st)
            return broke(std::move(st.error()));
    } else {
        // Ciphertext is as long as the plaintext; one buffer for header, ciphertext and tag.
        if (sender_) {
            if (auto e = sender_->failed())
                return broke(std::move(*e));
            sendbuf_ = sender_->take();
        }
        sendbuf_.resize(sizeof h + len + kSessionTagBytes);
        std::memcpy(sendbuf_.data(), &h, sizeof h);
        uint8_t iv[12];
        keys_->iv(iv, true, send_seq_);
        EVP_CIPHER_CTX* c = keys_->enc;
        int outl = 0;
        uint8_t* out = sendbuf_.data() + sizeof h;
        bool ok = EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv) == 1 &&
                  EVP_EncryptUpdate(c, nullptr, &outl, hb, sizeof h) == 1;
        if (ok && !head.empty())
            ok = EVP_EncryptUpdate(c, out, &outl, head.data(), static_cast<int>(head.size())) == 1;
        if (ok && !body.empty())
            ok = EVP_EncryptUpdate(c, out + head.size(), &outl, body.data(), static_cast<int>(body.size())) == 1;
        ok = ok && EVP_EncryptFinal_ex(c, out + len, &outl) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kSessionTagBytes, out + len) == 1;
        if (!ok)
            return broke(Error(EIO, "AES-GCM encryption failed"));
        if (sender_) {
            sender_->push(std::move(sendbuf_));
            sendbuf_ = Payload();
        } else {
            iovec iov{sendbuf_.data(), sendbuf_.size()};
            Status st = write_full(fd_.get(), {&iov, 1}, opts_.io_timeout_ms);
            if (!st)
                return broke(std::move(st.error()));
        }
    }
    send_seq_++;
    bytes_sent_ += sizeof h + len + (handshake ? kHandshakeTagBytes : kSessionTagBytes);
    return {};
}

Expected<Message> Channel::recv_frame(int timeout_ms, bool handshake) {
    if (broken_)
        return failf(EPIPE, "the connection to {} is already broken", peer_);
    if (sender_)
        if (auto e = sender_->failed()) {  // what we sent did not get through: no answer will come
            broken_ = true;
            return std::unexpected(std::move(*e));
        }
    if (timeout_ms < 0)
        timeout_ms = opts_.io_timeout_ms;
    auto refuse = [&](int err, std::string why) -> Expected<Message> {
        broken_ = true;
        return failf(err, "message {} from {} refused: {}", recv_seq_, peer_, why);
    };
    Header h{};
    Status st = read_full(fd_.get(), &h, sizeof h, timeout_ms);
    if (!st) {
        broken_ = true;
        return std::unexpected(std::move(st.error()));
    }
    if (h.magic != kFrameMagic)
        return refuse(EBADMSG, fmt::format("bad magic {:#x} (not a criu migration stream)", h.magic));
    if (h.version != kWireVersion)
        return refuse(EPROTO, fmt::format("wire version {}, this criu speaks {}", h.version, kWireVersion));
    auto type = static_cast<MsgType>(h.type);
    uint32_t cap = max_payload(type);
    if (cap == 0 || h.reserved != 0)
        return refuse(EBADMSG, fmt::format("unknown message type {}", h.type));
    if (handshake != is_handshake_type(type) && !(type == MsgType::welcome && !handshake) &&
        !(type == MsgType::error))
        return refuse(EPROTO, fmt::format("a {} message {} the handshake", msg_type_name(type),
                                          handshake ? "during" : "after"));
    if (h.length > cap)
        return refuse(EMSGSIZE, fmt::format("{} message of {} bytes is over its cap of {}", msg_type_name(type),
                                            h.length, cap));
    if (h.seq != recv_seq_)
        return refuse(EPROTO, fmt::format("sequence number {} where {} was due (replayed, reordered or dropped "
                                          "message)", h.seq, recv_seq_));
    uint32_t tag_len = handshake ? kHandshakeTagBytes : kSessionTagBytes;
    // Ciphertext and tag land in a reused buffer; the plaintext replaces the ciphertext in
    // place (GCM is a stream mode) and the buffer becomes the payload: no second 4 MiB buffer.
    Payload wire = std::move(spare_);
    spare_ = Payload();
    wire.resize(size_t(h.length) + tag_len);
    st = read_full(fd_.get(), wire.data(), wire.size(), timeout_ms);
    if (!st) {
        broken_ = true;
        return std::unexpected(std::move(st.error()));
    }
    const size_t wire_bytes = wire.size();
    const auto* hb = reinterpret_cast<const uint8_t*>(&h);
    Message m;
    m.type = type;
    if (handshake) {
        std::vector<uint8_t> all = concat({{hb, sizeof h}, {wire.data(), h.length}});
        Mac tag = hmac(keys_->hs, all);
        if (CRYPTO_memcmp(tag.data(), wire.data() + h.length, kMacBytes) != 0)
            return refuse(EACCES, fmt::format("{} message fails authentication (a different --auth-key, or an "
                                              "altered stream)", msg_type_name(type)));
    } else {
        uint8_t iv[12];
        keys_->iv(iv, false, recv_seq_);
        EVP_CIPHER_CTX* c = keys_->dec;
        uint8_t tag[kSessionTagBytes];
        std::memcpy(tag, wire.data() + h.length, kSessionTagBytes);
        int outl = 0;
        bool ok = EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, iv) == 1 &&
                  EVP_DecryptUpdate(c, nullptr, &outl, hb, sizeof h) == 1;
        if (ok && h.length)
            ok = EVP_DecryptUpdate(c, wire.data(), &outl, wire.data(), static_cast<int>(h.length)) == 1;
        // Nothing of the plaintext is used unless the tag verifies.
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kSessionTagBytes, tag) == 1 &&
             EVP_DecryptFinal_ex(c, wire.data() + h.length, &outl) == 1;
        if (!ok)
            return refuse(EACCES, fmt::format("{} message fails authentication (altered or forged)",
                                              msg_type_name(type)));
    }
    wire.resize(h.length);
    m.payload = std::move(wire);
    recv_seq_++;
    bytes_received_ += sizeof h + wire_bytes;
    return m;
}

void Channel::start_send_thread() {
    if (!sender_)
        sender_ = std::make_unique<SendThread>(fd_.get(), opts_.io_timeout_ms);
}

Status Channel::flush() {
    if (!sender_)
        return {};
    Status st = sender_->drain();
    if (!st)
        return broke(std::move(st.error()));
    return {};
}

Status Channel::send(MsgType type, std::span<const uint8_t> head, std::span<const uint8_t> body) {
    if (!keys_->session)
        return fail(EPROTO, "send before the handshake");
    return send_frame(type, head, body, false);
}

Expected<Message> Channel::recv(int timeout_ms) {
    if (!keys_->session)
        return fail(EPROTO, "recv before the handshake");
    return recv_frame(timeout_ms, false);
}

Expected<Message> Channel::expect(MsgType type, int timeout_ms) {
    Message m = TRY(recv(timeout_ms));
    if (m.type == MsgType::error) {
        broken_ = true;
        return std::unexpected(error_from_payload(m.payload, peer_));
    }
    if (m.type != type) {
        broken_ = true;
        return failf(EPROTO, "{} sent a {} message where a {} was due", peer_, msg_type_name(m.type),
                     msg_type_name(type));
    }
    return m;
}

void Channel::send_error(const Error& e) {
    if (!broken_ && keys_->session) {
        auto p = error_payload(e);
        (void)send_frame(MsgType::error, p, {}, false);
    }
    broken_ = true;
}

std::vector<uint8_t> error_payload(const Error& e) {
    ByteWriter w;
    w.u32(static_cast<uint32_t>(e.err()));
    std::string s = e.str();
    if (s.size() > 4000)
        s.resize(4000);
    w.str(s);
    return std::move(w.bytes());
}

Error error_from_payload(std::span<const uint8_t> p, const std::string& peer) {
    ByteReader r(p);
    uint32_t err = 0;
    std::string msg;
    if (!r.u32(err) || !r.str(msg, 4096))
        return Error(EPROTO, fmt::format("{} gave up with a malformed error message", peer));
    for (char& c : msg)
        if (static_cast<unsigned char>(c) < 0x20)
            c = ' ';  // the peer's text goes into our log and terminal
    return Error(err ? static_cast<int>(err) : EIO, fmt::format("{} gave up: {}", peer, msg));
}

// ---- handshake ---------------------------------------------------------------------

namespace {

struct Derived {
    Mac prk, hs;
};

Derived derive_base(const AuthKey& key) {
    Derived d;
    d.prk = hmac(text("criu-migrate v1"), key.bytes());
    d.hs = hmac(d.prk, text("handshake"));
    return d;
}

Mac proof(const Mac& hs, const char* label, ChannelPurpose purpose, std::span<const uint8_t> cn,
          std::span<const uint8_t> sn) {
    uint8_t p = static_cast<uint8_t>(purpose);
    return hmac(hs, concat({text(label), {&p, 1}, cn, sn}));
}

Expected<EVP_CIPHER_CTX*> gcm_ctx(const Mac& key, bool enc) {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    if (!c)
        return fail(ENOMEM, "EVP_CIPHER_CTX_new");
    int ok = enc ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
                 : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
    if (ok != 1) {
        EVP_CIPHER_CTX_free(c);
        return fail(EIO, "AES-256-GCM is not available in libcrypto");
    }
    return c;
}

}  // namespace

Status Channel::handshake_client(const AuthKey& key, ChannelPurpose purpose, Log& log) {
    Derived d = derive_base(key);
    keys_->prk = d.prk;
    keys_->hs = d.hs;
    keys_->is_client = true;
    std::array<uint8_t, kNonceBytes> cn{}, sn{};
    if (RAND_bytes(cn.data(), cn.size()) != 1)
        return fail(EIO, "RAND_bytes failed");
    ByteWriter hello;
    hello.u32(kWireVersion);
    hello.u8(static_cast<uint8_t>(purpose));
    hello.raw(cn.data(), cn.size());
    TRY_VOID(send_frame(MsgType::hello, hello.bytes(), {}, true));

    auto ch = recv_frame(opts_.handshake_timeout_ms, true);
    if (!ch) {
        if (ch.error().err() == ECONNRESET)
            ch.error().add_context("the server closed the connection during the handshake (a different --auth-key, "
                                   "or not a criu server of this kind? see the server's log)");
        return std::unexpected(std::move(ch.error()));
    }
    if (ch->type != MsgType::challenge)
        return broke(Error(EPROTO, fmt::format("{} answered the hello with {}", peer_, msg_type_name(ch->type))));
    ByteReader r(ch->payload);
    Mac sproof{};
    if (!r.raw(sn.data(), sn.size()) || !r.raw(sproof.data(), sproof.size()) || r.left())
        return broke(Error(EBADMSG, fmt::format("malformed challenge from {}", peer_)));
    Mac want = proof(d.hs, "server proof", purpose, cn, sn);
    if (CRYPTO_memcmp(want.data(), sproof.data(), want.size()) != 0) {
        log.error("net", "{}: the server's proof is wrong: it does not hold our key", peer_);
        return broke(Error(EACCES, fmt::format("{} failed to prove it holds the key", peer_)));
    }
    Mac cproof = proof(d.hs, "client proof", purpose, cn, sn);
    TRY_VOID(send_frame(MsgType::response, cproof, {}, true));

    keys_->tx = hmac(d.prk, concat({text("c2s"), cn, sn}));
    keys_->rx = hmac(d.prk, concat({text("s2c"), cn, sn}));
    keys_->enc = TRY(gcm_ctx(keys_->tx, true));
    keys_->dec = TRY(gcm_ctx(keys_->rx, false));
    keys_->session = true;
    auto w = recv_frame(opts_.handshake_timeout_ms, false);
    if (!w) {
        if (w.error().err() == ECONNRESET)
            w.error().add_context("the server refused our proof (see the server's log)");
        return std::unexpected(std::move(w.error()));
    }
    if (w->type == MsgType::error)
        return broke(error_from_payload(w->payload, peer_));
    if (w->type != MsgType::welcome)
        return broke(Error(EPROTO, fmt::format("{} sent {} instead of welcome", peer_, msg_type_name(w->type))));
    log.info("net", "connected to {}: mutually authenticated{}", peer_,
             key.is_insecure() ? " with the PUBLIC key (no --auth-key): anyone can read and forge this stream" : "");
    return {};
}

Status Channel::handshake_server(const AuthKey& key, ChannelPurpose purpose, Log& log) {
    Derived d = derive_base(key);
    keys_->prk = d.prk;
    keys_->hs = d.hs;
    keys_->is_client = false;
    Message hello = TRY(recv_frame(opts_.handshake_timeout_ms, true));
    if (hello.type != MsgType::hello)
        return broke(Error(EPROTO, fmt::format("{} began with {}", peer_, msg_type_name(hello.type))));
    ByteReader r(hello.payload);
    uint32_t version = 0;
    uint8_t p = 0;
    std::array<uint8_t, kNonceBytes> cn{}, sn{};
    if (!r.u32(version) || !r.u8(p) || !r.raw(cn.data(), cn.size()) || r.left())
        return broke(Error(EBADMSG, fmt::format("malformed hello from {}", peer_)));
    if (version != kWireVersion)
        return broke(Error(EPROTO, fmt::format("{} speaks wire version {}, we speak {}", peer_, version, kWireVersion)));
    if (p != static_cast<uint8_t>(purpose))
        return broke(Error(EPROTO, fmt::format("{} wants purpose {}, this server serves purpose {}", peer_, p,
                                               static_cast<int>(purpose))));
    if (RAND_bytes(sn.data(), sn.size()) != 1)
        return fail(EIO, "RAND_bytes failed");
    Mac sproof = proof(d.hs, "server proof", purpose, cn, sn);
    ByteWriter ch;
    ch.raw(sn.data(), sn.size());
    ch.raw(sproof.data(), sproof.size());
    TRY_VOID(send_frame(MsgType::challenge, ch.bytes(), {}, true));

    Message resp = TRY(recv_frame(opts_.handshake_timeout_ms, true));
    Mac want = proof(d.hs, "client proof", purpose, cn, sn);
    if (resp.type != MsgType::response || resp.payload.size() != want.size() ||
        CRYPTO_memcmp(want.data(), resp.payload.data(), want.size()) != 0)
        return broke(Error(EACCES, fmt::format("{} failed to prove it holds the key", peer_)));

    keys_->tx = hmac(d.prk, concat({text("s2c"), cn, sn}));
    keys_->rx = hmac(d.prk, concat({text("c2s"), cn, sn}));
    keys_->enc = TRY(gcm_ctx(keys_->tx, true));
    keys_->dec = TRY(gcm_ctx(keys_->rx, false));
    keys_->session = true;
    TRY_VOID(send_frame(MsgType::welcome, {}, {}, false));
    log.info("net", "{}: mutually authenticated", peer_);
    return {};
}

Expected<Channel> Channel::client(UniqueFd fd, std::string peer, const AuthKey& key, ChannelPurpose purpose,
                                  Log& log, ChannelOptions opts) {
    Channel c(std::move(fd), std::move(peer), opts);
    TRY_VOID_CTX(c.handshake_client(key, purpose, log), "handshake with {}", c.peer_);
    return c;
}

Expected<Channel> Channel::server(UniqueFd fd, std::string peer, const AuthKey& key, ChannelPurpose purpose,
                                  Log& log, ChannelOptions opts) {
    Channel c(std::move(fd), std::move(peer), opts);
    TRY_VOID_CTX(c.handshake_server(key, purpose, log), "handshake with {}", c.peer_);
    return c;
}

Expected<Channel> Channel::connect(const Endpoint& ep, const AuthKey& key, ChannelPurpose purpose, Log& log,
                                   ChannelOptions opts) {
    UniqueFd fd = TRY(connect_to(ep, opts.connect_timeout_ms));
    return client(std::move(fd), ep.text, key, purpose, log, opts);
}

}  // namespace criu
