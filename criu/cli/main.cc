// The criu command line: CRIU-compatible commands and options over the library core.
// Only this file prints a final error and chooses the exit code.
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "criu/cli/commands.h"
#include "criu/core/options.h"

namespace criu {
namespace {

constexpr const char* kVersion = "0.1";

// CRIU accepts "-v4" and "-vvv" (and -v alone); CLI11 does not, so they are rewritten
// to "--verbosity N" before parsing.
std::vector<std::string> normalize_args(int argc, char** argv) {
    std::vector<std::string> out;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a.size() >= 2 && a[0] == '-' && a[1] == 'v' && a.find_first_not_of('v', 1) == std::string::npos) {
            out.push_back("--verbosity");
            out.push_back(std::to_string(a.size() == 2 ? 3 : 2 + (a.size() - 1)));
        } else if (a.size() == 3 && a[0] == '-' && a[1] == 'v' && a[2] >= '0' && a[2] <= '4') {
            out.push_back("--verbosity");
            out.push_back(a.substr(2));
        } else {
            out.push_back(std::move(a));
        }
    }
    return out;
}

}  // namespace
}  // namespace criu

int main(int argc, char** argv) {
    using namespace criu;
    Options opts;
    CommandArgs cmd;

    CLI::App app{"criu: checkpoint/restore and live migration of Linux processes", "criu"};
    app.set_version_flag("-V,--version", fmt::format("Version: {}", kVersion));
    app.positionals_at_end(false);

    app.add_option("command", cmd.name,
                   "check | dump | pre-dump | restore | show | page-server | lazy-pages | migrate | serve | cache | net-unlock")
        ->required();
    app.add_option("args", cmd.args, "arguments of the command (show: FILE or DIR; cache: stat|verify|gc)");

    app.add_option("-t,--tree", opts.pid, "pid of the root of the process tree to dump");
    app.add_option("-D,--images-dir", opts.images_dir, "directory of the image files");
    app.add_option("-W,--work-dir", opts.work_dir, "directory for logs and stats (default: the images dir)");
    app.add_option("-o,--log-file", opts.log_file, "log file name, relative to the work dir");
    app.add_option("--verbosity", opts.verbosity, "console verbosity 0..4 (also -v0..-v4, -vvv)")
        ->check(CLI::Range(0, 4));
    app.add_flag("-R,--leave-running", opts.leave_running, "leave the tree running after the dump");
    app.add_flag("-j,--shell-job", opts.shell_job, "the tree was started from a shell: reattach its terminal");
    app.add_flag("--tcp-established", opts.tcp_established, "checkpoint established TCP connections");
    app.add_flag("--file-locks", opts.file_locks, "checkpoint file locks");
    app.add_flag("--ext-unix-sk", opts.ext_unix_sk, "allow unix sockets with a peer outside the tree");
    app.add_flag("-d,--restore-detached", opts.restore_detached, "detach from the restored tree");
    app.add_option("--pidfile", opts.pidfile, "write the pid of the restored root here");
    app.add_option("--prev-images-dir", opts.prev_images_dir, "parent image directory of an incremental dump");
    app.add_flag("--track-mem", opts.track_mem, "track memory changes for the next incremental dump");
    app.add_option("--track-agent-timeout", opts.track_agent_timeout_s,
                   "seconds an idle dirty-tracking agent waits for the next dump (default 3600)");
    app.add_flag("--pre-copy", opts.pre_copy, "dump: copy memory while the process runs, freeze only for the rest");
    app.add_option("--max-downtime-ms", opts.max_downtime_ms,
                   "dump --pre-copy: target for copying the last delta while frozen (default 100)");
    app.add_flag("--page-server", opts.page_server, "send pages to a page server");
    app.add_option("--address", opts.address, "page server address");
    app.add_option("--port", opts.port, "page server port")->check(CLI::Range(0, 65535));
    app.add_flag("--lazy-pages", opts.lazy_pages, "restore memory on demand (post-copy)");
    app.add_option("--root", opts.root, "root directory of the restored tree");
    app.add_flag("--compress", opts.compress, "compress page data with zstd");
    app.add_flag("--dry-run", opts.dry_run, "pre-flight: report every blocker without freezing anything");
    app.add_option("--stats-json", opts.stats_json, "write timings and counters as JSON to this file");
    app.add_flag("--no-progress", [&](std::int64_t) { opts.progress = false; }, "never show a progress line");

    app.add_flag("--ms", cmd.check_ms, "check: the same check (accepted for scripts)");
    app.add_flag("--all", cmd.check_all, "check: report the optional features too");
    app.add_option("--feature", cmd.check_feature, "check: answer for one feature by exit code ('list' lists them)");
    app.add_flag("--json", cmd.json, "check, show --backtraces, cache: print JSON");
    app.add_flag("--backtraces", cmd.backtraces, "show: print each thread's call stack at the dump (text; JSON with --json)");
    app.add_option("--cache-dir", cmd.cache_dir,
                   "cache, serve, migrate, page-server, dump/pre-dump --page-server: the SSD cache directory");
    app.add_option("--auth-key", opts.auth_key, "page-server, dump --page-server, serve, migrate: pre-shared key file");
    app.add_option("--listen", cmd.listen, "serve: listen on ADDR:PORT");
    app.add_option("--to", cmd.to, "migrate: the destination's criu serve, ADDR:PORT");
    app.add_flag("--once", cmd.once, "serve: exit after one migration");
    app.add_flag("--post-copy", cmd.post_copy, "migrate: when pre-copy does not converge, the destination runs the process and fetches the last round's pages on demand");
    app.add_option("--cache-size", cmd.cache_size, "migrate, dump, pre-dump: bound on the SSD cache's disk use (e.g. 512M, 4G)");
    app.add_option("--cache-mode", cmd.cache_mode,
                   "migrate, dump, pre-dump: writeback (default: acknowledged on the local SSD, sent in the background) or "
                   "writethrough (acknowledged once the destination has it)");
    app.add_option("--cache-policy", cmd.cache_policy, "migrate, dump, pre-dump: eviction order of the SSD cache, lru (default) or fifo");
    app.add_flag("--throttle", cmd.throttle,
                 "migrate: when pre-copy does not converge, throttle the process's CPU through a cgroup until it "
                 "does (the default without --post-copy; with it, throttle first and post-copy only if that fails)");
    app.add_flag("--no-throttle", cmd.no_throttle, "migrate: never throttle the process");
    app.add_flag("--no-lazy-restore", cmd.no_lazy_restore,
                 "migrate: the destination fills all memory before the process runs (a longer pause)");

    std::vector<std::string> args = normalize_args(argc, argv);
    std::reverse(args.begin(), args.end());  // CLI11 wants them reversed
    try {
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (opts.work_dir.empty())
        opts.work_dir = opts.images_dir;
    if (!isatty(STDERR_FILENO))
        opts.progress = false;
    return run_command(cmd, opts);
}
