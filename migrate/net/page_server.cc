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
    return {};
}

Expected<std::unique_ptr<PageServerClient>> PageServerClient::connect(const std::string& address, int port,
                                                                      const std::string& auth_key_file, Log& log) {
    Endpoint ep = TRY_CTX(Endpoint::from(address, port), "--page-server");
    AuthKey key = TRY(key_or_public(auth_key_file, log, "dump to a page server"));
    Channel ch = TRY_CTX(Channel::connect(ep, key, ChannelPurpose::page_server, log), "page server {}", ep.text);
    return std::unique_ptr<PageServerClient>(new PageServerClient(std::move(ch)));
}

PageSinkFactory PageServerClient::factory() {
    return [this](int64_t id, const PageWriterOptions& o) { return RemotePageSink::open(ch_, id, o); };
}

Status PageServerClient::close() { return ch_.send(MsgType::bye, {}); }

}  // namespace criu
