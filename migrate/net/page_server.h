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
#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "images/page_sink.h"
#include "migrate/net/channel.h"

namespace criu {

struct PageServerOptions {
    std::string address;
    int port = 0;
    std::string images_dir;
    std::string auth_key_file;  // empty: the public key, with a warning
    int accept_timeout_ms = -1;  // -1: wait for a dump for ever
    ChannelOptions channel;
};

Status run_page_server(const PageServerOptions& opts, Log& log);

// The dump's connection to a page server, for as long as the dump runs.
class PageServerClient {
public:
    static Expected<std::unique_ptr<PageServerClient>> connect(const std::string& address, int port,
                                                                const std::string& auth_key_file, Log& log);
    // What DumpContext::page_sinks holds: every process's pages go over this connection.
    PageSinkFactory factory();
    // The dump is complete: tells the server, which then exits.
    Status close();

private:
    explicit PageServerClient(Channel ch) : ch_(std::move(ch)) {}
    Channel ch_;
};

}  // namespace criu
