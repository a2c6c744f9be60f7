// Options of one criu invocation, filled by the CLI and carried by the operation's
// context (DumpContext, RestoreContext, MigrateContext). Never a global.
#pragma once

#include <sys/types.h>

#include <string>

namespace criu {

struct Options {
    pid_t pid = 0;                    // -t
    std::string images_dir = ".";     // -D
    std::string work_dir;             // -W (logs, stats); defaults to images_dir
    int verbosity = 2;                // -v0..4 (file log always gets everything up to 4)
    std::string log_file;             // -o / --log-file (relative to work_dir)
    bool leave_running = false;       // -R
    bool shell_job = false;           // -j
    bool tcp_established = false;
    bool file_locks = false;
    bool ext_unix_sk = false;
    bool restore_detached = false;    // -d
    std::string pidfile;
    std::string prev_images_dir;
    bool track_mem = false;
    unsigned track_agent_timeout_s = 3600;  // --track-agent-timeout: an idle tracking agent ends
    bool pre_copy = false;                  // dump --pre-copy
    unsigned max_downtime_ms = 100;         // --max-downtime-ms: pre-copy's target for the frozen copy
    bool page_server = false;
    std::string address;
    int port = 0;
    std::string auth_key;             // --auth-key FILE (page server, serve, migrate)
    bool lazy_pages = false;
    std::string root;
    bool compress = false;
    bool dry_run = false;
    std::string stats_json;           // --stats-json FILE
    bool progress = true;             // shown only when stderr is a terminal
    // Not an option: whether a dump waits for the processes it killed to exit. The CLI exits
    // right after the dump and leaves it to the kernel (SeizedProcess::kill); a caller that
    // goes on (tests, the migration source) waits, as it may restore the same pids next.
    bool reap_killed = true;
};

}  // namespace criu
