// `criu page-server --address A --port P -D DIR [--auth-key FILE]` and the dump's side of
// it (`criu dump --page-server --address A --port P [--auth-key FILE]`), CRIU-compatible:
// the dump sends its pages, the page server writes pages-/pagemap- images into DIR, and
// the dump writes every other image locally. Restoring needs both sets in one directory.
//
// CRIU's page server has no authentication at all. Ours takes --auth-key like `criu serve`;
// without one both sides use a public key (the stream is then checked against accidental
// corruption only) and say so loudly. It listens only where told: --address is required.
// It serves one dump (one connection) and exits, as CRIU's does without --daemon.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "images/page_sink.h"
#include "migrate/net/channel.h"
#include "migrate/net/remote_chunks.h"

namespace criu {

struct PageServerOptions {
    std::string address;
    int port = 0;
    std::string images_dir;
    std::string auth_key_file;  // empty: the public key, with a warning
    // A dump with --cache-dir sends content-addressed chunks (remote_chunks.h): they are kept
    // in this chunk cache and the page images built from them. Empty: such a dump is refused.
    std::string cache_dir;
    int accept_timeout_ms = -1;  // -1: wait for a dump for ever
    ChannelOptions channel;
};

Status run_page_server(const PageServerOptions& opts, Log& log);

// dump / pre-dump --page-server --cache-dir: the dump's side of the SSD cache.
struct PageServerCache {
    std::string dir;
    uint64_t size = 0;  // 0 keeps the directory's
    CacheMode mode = CacheMode::writeback;
    std::optional<EvictionPolicy> policy;
};

// The dump's connection to a page server, for as long as the dump runs. With
// a cache the pages go through the local SSD cache (writeback by default: the dump
// goes on at local disk speed while the cache's writer streams the chunks; each process's
// pages end with the backlog) and only chunks the page server lacks cross the wire.
class PageServerClient {
public:
    static Expected<std::unique_ptr<PageServerClient>> connect(const std::string& address, int port,
                                                                const std::string& auth_key_file, Log& log,
                                                                const PageServerCache* cache = nullptr);
    // What DumpContext::page_sinks holds: every process's pages go over this connection.
    PageSinkFactory factory();
    // The dump is complete: tells the server, which then exits.
    Status close();

private:
    explicit PageServerClient(Channel ch) : ch_(std::move(ch)) {}
    Channel ch_;
    // Declared after the channel: the cache (its writer) stops before the channel goes.
    std::unique_ptr<NetChunkRemote> remote_;
    std::unique_ptr<ChunkCache> cache_;
};

}  // namespace criu
