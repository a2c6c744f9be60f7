// `criu serve --listen ADDR:PORT --cache-dir DIR --auth-key FILE [--once] [--pidfile F]`:
// the destination of a live migration.
//
// Per connection: the mutual handshake (channel.h; a peer without the key is refused,
// logged, and the server goes on listening), then
//   source -> migrate_begin {pid, flags}      server: staging dir DIR/incoming/<pid>.<n>
//   server -> ready
//   source -> pages_* (page_transfer.h), file_data (file_transfer.h), as many as needed
//   source -> restore                          server: restore from the staging dir, held
//   server -> restored {pid}                   (the process exists, every thread stopped)
//   source -> commit                           (the source has killed its copy)
//   server -> done                             (the process runs here now)
// Any error, a malformed message, or silence longer than the timeout: the held process is
// killed, the staging dir removed, an error sent if the channel still works. A server
// killed with SIGKILL cannot clean up: the next `criu serve` on the same DIR removes
// what is left in DIR/incoming before it listens. One server per DIR (flock).
#pragma once

#include <string>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "migrate/net/channel.h"

namespace criu {

struct ServeOptions {
    std::string listen;          // ADDR:PORT, numeric
    std::string cache_dir;       // staging of incoming image sets (and chunk cache)
    std::string auth_key_file;   // required
    bool once = false;           // exit after the first authenticated migration, whatever its outcome
    std::string pidfile;         // the pid of the last restored process (in our pid namespace)
    ChannelOptions channel;
    int restore_timeout_ms = 300000;  // the source waits this long for `restored`
    Options base;                // verbosity, work dir and such for the restore
};

Status run_serve(const ServeOptions& opts, Log& log);

}  // namespace criu
