#include "migrate/net/page_server.h"

#include <csignal>

#include "images/image_dir.h"
#include "migrate/net/page_transfer.h"

namespace criu {

namespace {

Expected<AuthKey> key_or_public(const std::string& file, Log& log, const char* who) {
    if (!file.empty())
        return AuthKey::load(file);
    log.warn("net", "{} WITHOUT --auth-key: anyone who can reach the port can send or read pages; use --auth-key "
                    "FILE on both sides", who);
    return AuthKey::insecure();
}

}  // namespace

Status run_page_server(const PageServerOptions& opts, Log& log) {
    if (opts.address.empty())
        return fail(EINVAL, "page-server: --address is required (it listens only where told)");
    Endpoint ep = TRY(Endpoint::from(opts.address, opts.port));
    AuthKey key = TRY(key_or_public(opts.auth_key_file, log, "page server"));
    ImageDir dir = TRY(ImageDir::create(opts.images_dir));
    UniqueFd lfd = TRY(listen_on(ep));
    log.info("pages", "page server listening on {}, writing into {}", ep.text, dir.path());

    std::string peer;
    UniqueFd fd = TRY_CTX(accept_one(lfd.get(), opts.accept_timeout_ms, peer), "page server on {}", ep.text);
    lfd.reset();  // one dump per page server
    auto ch = Channel::server(std::move(fd), peer, key, ChannelPurpose::page_server, log, opts.channel);
    if (!ch) {
        log.error("net", "connection from {} refused: {}", peer, ch.error().str());
        return std::unexpected(std::move(ch.error()));
    }
    PageReceiver rx(dir, log);
    std::unique_ptr<ChunkReceiver> chunks;
    if (!opts.cache_dir.empty())
        chunks = std::make_unique<ChunkReceiver>(opts.cache_dir, log);
    for (;;) {
        auto m = ch->recv();
        Status st;
        if (!m) {
            st = std::unexpected(std::move(m.error()));
        } else if (m->type == MsgType::bye) {
            if (!rx.idle())
                st = fail(EPROTO, "the dump ended in the middle of a process's pages");
            else
                break;
        } else if (m->type == MsgType::error) {
            st = std::unexpected(error_from_payload(m->payload, peer));
        } else if (is_chunk_message(m->type) && !chunks) {
            st = failf(EPROTO, "{} sends chunks of an SSD cache (dump --cache-dir): start the page server with "
                       "--cache-dir DIR", peer);
        } else if (auto c = chunks ? chunks->handle(*ch, *m, rx) : Expected<bool>(false); !c || *c) {
            if (!c)
                st = std::unexpected(std::move(c.error()));
        } else {
            auto handled = rx.handle(*ch, *m);
            if (!handled)
                st = std::unexpected(std::move(handled.error()));
            else if (!*handled)
                st = failf(EPROTO, "unexpected {} message", msg_type_name(m->type));
        }
        if (!st) {
            ch->send_error(st.error());
            rx.discard();
            st.error().add_context(fmt::format("page server, dump from {}", peer));
            return st;
        }
    }
    log.info("pages", "dump from {} complete: {} pages, {} bytes stored in {}", peer, rx.pages_received(),
             rx.bytes_stored(), dir.path());
    if (chunks)
        log.info("pages", "chunks from {}: {} received, {} taken from the cache {}", peer, chunks->chunks_received(),
                 chunks->chunks_reused(), opts.cache_dir);
    return {};
}

Expected<std::unique_ptr<PageServerClient>> PageServerClient::connect(const std::string& address, int port,
                                                                      const std::string& auth_key_file, Log& log,
                                                                      const PageServerCache* cache) {
    Endpoint ep = TRY_CTX(Endpoint::from(address, port), "--page-server");
    AuthKey key = TRY(key_or_public(auth_key_file, log, "dump to a page server"));
    Channel ch = TRY_CTX(Channel::connect(ep, key, ChannelPurpose::page_server, log), "page server {}", ep.text);
    std::unique_ptr<PageServerClient> c(new PageServerClient(std::move(ch)));
    if (cache && !cache->dir.empty()) {
        c->remote_ = std::make_unique<NetChunkRemote>(c->ch_);
        ChunkCacheOptions co;
        co.mode = cache->mode;
        co.cache_size = cache->size;
        co.policy = cache->policy;
        co.wait_for_writeback = true;  // a full cache slows the dump to the link's pace
        co.remote = c->remote_.get();
        co.log = &log;
        c->cache_ = TRY_CTX(ChunkCache::open(cache->dir, co), "--cache-dir {}", cache->dir);
    }
    return c;
}

PageSinkFactory PageServerClient::factory() {
    if (cache_)
        return [this](int64_t id, const PageWriterOptions& o) { return CachedPageSink::open(ch_, *cache_, id, o); };
    return [this](int64_t id, const PageWriterOptions& o) { return RemotePageSink::open(ch_, id, o); };
}

Status PageServerClient::close() { return ch_.send(MsgType::bye, {}); }

}  // namespace criu
