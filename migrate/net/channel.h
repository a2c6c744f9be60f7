// An authenticated, encrypted, ordered message channel over one TCP connection: the
// transport of the page server and of live migration (wire format: migrate/README.md).
//
// Handshake (mutual challenge-response, before anything else is accepted):
//   client -> HELLO     {version, purpose, client nonce}           tagged with K_hs
//   server -> CHALLENGE {server nonce, server proof}               tagged with K_hs
//   client -> RESPONSE  {client proof}                             tagged with K_hs
//   server -> WELCOME   {}                                         first session message
// PRK = HMAC-SHA256("criu-migrate v1", PSK) (HKDF-extract); K_hs = HMAC(PRK, "handshake");
// proofs = HMAC-SHA256(K_hs, "server proof"|"client proof" || purpose || nonces); session
// keys per direction = HMAC-SHA256(PRK, "c2s"|"s2c" || nonces). Handshake frames carry an
// HMAC-SHA256 tag. Session frames are AES-256-GCM (header as associated data, IV = direction
// and sequence number): HMAC-SHA256 runs at ~0.4 GiB/s on this machine's CPU (no SHA
// extensions), AES-GCM with AES-NI at several GiB/s, faster than the veth link, and page
// contents cross the wire encrypted as well as authenticated.
//
// Every frame has a sequence number, one counter per direction starting at 0; a frame whose
// number is not the next one (replayed, reordered, dropped) is refused, as is one whose tag
// does not verify (altered), whose type is unknown or whose length is over that type's cap
// (checked before anything is read or allocated). Any refusal breaks the channel for good:
// there is no resynchronising inside an attacker's stream. Every read and write has a
// timeout, so a dead peer costs at most that long.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "migrate/net/auth_key.h"
#include "migrate/net/socket_io.h"

namespace criu {

enum class MsgType : uint16_t {
    hello = 1,
    challenge = 2,
    response = 3,
    welcome = 4,
    error = 10,  // {u32 errno, str message}: the sender gives up; the channel ends
    bye = 11,

    // Pages (page server, migration): the receiver feeds a PageWriter per process.
    pages_open = 20,    // {i64 id}
    pages_data = 21,    // {u64 vaddr, u32 nr_pages, u8 lazy} + nr_pages * 4096 bytes
    pages_zero = 22,    // {u64 vaddr, u32 nr_pages}
    pages_parent = 23,  // {u64 vaddr, u32 nr_pages}
    pages_close = 24,   // {} -> pages_done or error
    pages_done = 25,    // {u64 pages, u64 bytes_stored}
    pages_remote = 26,  // {u64 vaddr, u32 nr_pages}: post-copy, the data stays on the sender until asked

    // Migration (serve.h): image files, the restore and its commit.
    migrate_begin = 40,  // {u32 pid, u32 flags}
    ready = 41,          // {}
    file_data = 42,      // {str name, u64 offset, u64 total, u8 last} + bytes
    restore = 43,        // {}
    restored = 44,       // {u32 pid}: restored, held stopped until commit
    commit = 45,         // {}: the source is gone; let the process run
    done = 46,           // {} or, after a lazy restore, {u64 fill_ms, u64 faults, u64 pages_copied}
    image_set = 47,      // {str name}: what follows belongs to the image set DIR/<name>
    released = 48,       // {u64 us from commit to release}: (lazy restore) the process runs; memory being filled

    // Chunks through the SSD cache (remote_chunks.h).
    chunk_have = 50,        // {u32 n} + n keys
    chunk_have_reply = 51,  // {u32 n} + n bytes (0/1)
    chunk_put = 52,         // {u32 n} + n * {key, u16 codec, u32 raw, u32 stored} + stored bytes
    chunk_put_ack = 53,     // {u32 n}
    chunk_pages = 54,       // {u64 vaddr, u32 nr_pages, u32 n} + n keys: pages by content key

    // Post-copy (destination -> source): pages_remote ranges, asked while the process runs.
    page_request = 60,  // {i64 id, u64 vaddr, u32 nr_pages}
    page_reply = 61,    // {i64 id, u64 vaddr, u32 nr_pages} + nr_pages * 4096 bytes
};

// migrate_begin flags.
inline constexpr uint32_t kMigrateLazyRestore = 1;  // restore memory lazily; `released`, then `done` once filled
inline constexpr uint32_t kMigratePostCopy = 2;     // the last delta's pages come as pages_remote (with lazy)
inline constexpr uint32_t kMigrateKnownFlags = kMigrateLazyRestore | kMigratePostCopy;

// "what is the purpose of this connection": bound into the proofs, so a key shared by a
// page server and a migration server cannot be used to talk one into the other's role.
enum class ChannelPurpose : uint8_t { page_server = 1, migrate = 2 };

inline constexpr uint32_t kFrameHeaderBytes = 24;
inline constexpr uint32_t kHandshakeTagBytes = 32;  // HMAC-SHA256
inline constexpr uint32_t kSessionTagBytes = 16;    // AES-GCM
inline constexpr uint32_t kFrameMagic = 0x4e4d5243;  // "CRMN"
inline constexpr uint16_t kWireVersion = 1;
// The largest payload of any type: a 4 MiB page batch plus its header.
inline constexpr uint32_t kMaxPayload = (4u << 20) + 4096;

// The largest payload a frame of `type` may have; 0 for a type that does not exist.
uint32_t max_payload(MsgType type);
const char* msg_type_name(MsgType type);

struct ChannelOptions {
    int io_timeout_ms = 30000;       // silence from the peer in the middle of anything
    int handshake_timeout_ms = 10000;
    int connect_timeout_ms = 10000;
};

// An allocator whose resize() leaves new bytes uninitialised: a 4 MiB payload is overwritten
// by the socket read and the decryption right away, and zero-filling it first cost as much
// CPU on the receiver as the decryption (perf, bench/README.md).
template <class T>
struct UninitAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitAllocator<U>;
    };
    UninitAllocator() = default;
    template <class U>
    UninitAllocator(const UninitAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};
using Payload = std::vector<uint8_t, UninitAllocator<uint8_t>>;

struct Message {
    MsgType type{};
    Payload payload;
};

class Channel {
public:
    static Expected<Channel> connect(const Endpoint& ep, const AuthKey& key, ChannelPurpose purpose, Log& log,
                                     ChannelOptions opts = {});
    // Both ends on an existing socket (tests use socketpairs).
    static Expected<Channel> client(UniqueFd fd, std::string peer, const AuthKey& key, ChannelPurpose purpose,
                                    Log& log, ChannelOptions opts = {});
    static Expected<Channel> server(UniqueFd fd, std::string peer, const AuthKey& key, ChannelPurpose purpose,
                                    Log& log, ChannelOptions opts = {});

    Channel(Channel&&) noexcept;
    Channel& operator=(Channel&&) noexcept;
    ~Channel();

    // One frame whose payload is `head` followed by `body` (pages go in `body` without being
    // copied into `head`).
    Status send(MsgType type, std::span<const uint8_t> head, std::span<const uint8_t> body = {});
    // The next frame; `timeout_ms` < 0 uses io_timeout_ms.
    Expected<Message> recv(int timeout_ms = -1);
    // The next frame, which must be `type`; an `error` frame from the peer becomes that error.
    Expected<Message> expect(MsgType type, int timeout_ms = -1);
    // From now on send() encrypts on the caller's thread and a thread of the channel's own
    // writes the frames to the socket, in order (at most a few 4 MiB frames queued), so the
    // sender's next batch is read and encrypted while the kernel copies this one (the socket
    // write, veth included, cost as much CPU as the encryption). An error of that thread
    // breaks the channel: the next send(), flush() or recv() returns it.
    void start_send_thread();
    // Waits until every frame queued so far is written (or failed).
    Status flush();
    // Hands a received payload back for the next recv() to reuse: a fresh 4 MiB buffer per
    // page batch is a fresh mapping to fault in and zero (perf showed it on the receiver).
    void recycle(Payload&& p) {
        if (p.capacity() > spare_.capacity())
            spare_ = std::move(p);
    }
    // Tells the peer why we give up (best effort) and breaks the channel.
    void send_error(const Error& e);

    const std::string& peer() const { return peer_; }
    uint64_t bytes_sent() const { return bytes_sent_; }
    uint64_t bytes_received() const { return bytes_received_; }
    bool broken() const { return broken_; }
    int fd() const { return fd_.get(); }
    // For a channel shared by threads (the SSD cache's write-back runs on its own thread):
    // hold this across one request and its answer.
    std::mutex& mutex() { return *mu_; }

private:
    struct Keys;
    struct SendThread;
    Channel(UniqueFd fd, std::string peer, ChannelOptions opts);
    Status send_frame(MsgType type, std::span<const uint8_t> head, std::span<const uint8_t> body, bool handshake);
    Expected<Message> recv_frame(int timeout_ms, bool handshake);
    Status handshake_client(const AuthKey& key, ChannelPurpose purpose, Log& log);
    Status handshake_server(const AuthKey& key, ChannelPurpose purpose, Log& log);
    Status broke(Error e);

    UniqueFd fd_;
    std::string peer_;
    ChannelOptions opts_;
    std::unique_ptr<Keys> keys_;
    uint64_t send_seq_ = 0, recv_seq_ = 0;
    uint64_t bytes_sent_ = 0, bytes_received_ = 0;
    bool broken_ = false;
    Payload sendbuf_;
    std::unique_ptr<SendThread> sender_;  // after start_send_thread(); owns the writing side
    Payload spare_;  // a received payload handed back by recycle()
    std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();
};

// Little-endian payload helpers shared by the protocols on top.
std::vector<uint8_t> error_payload(const Error& e);
Error error_from_payload(std::span<const uint8_t> p, const std::string& peer);

}  // namespace criu
