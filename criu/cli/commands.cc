#include "criu/cli/commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include <fmt/format.h>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/backtrace/backtrace.h"
#include "criu/backtrace/backtrace_report.h"
#include "criu/dump/dump.h"
#include "criu/dump/pre_copy.h"
#include "criu/files/net_lock.h"
#include "images/image_dir.h"
#include "images/show.h"
#include "kernel-feature-check/check_command.h"
#include "migrate/cache/cache_command.h"
#include "restore/lazy_pages.h"
#include "migrate/live/migrate_source.h"
#include "migrate/live/serve.h"
#include "migrate/net/page_server.h"
#include "restore/restore.h"

namespace criu {
namespace {

std::string join_path(const std::string& dir, const std::string& name) {
    if (name.empty() || name[0] == '/')
        return name;
    return dir + "/" + name;
}

// Opens the operation's log: -o NAME in the work dir, else <op>.log there.
void open_log(Log& log, const Options& opts, const char* default_name) {
    mkdir(opts.work_dir.c_str(), 0755);  // dump creates it; an existing one is fine
    std::string path = join_path(opts.work_dir, opts.log_file.empty() ? default_name : opts.log_file);
    if (!log.open_file(path))
        log.warn("cli", "cannot open log file {}: {}", path, std::strerror(errno));
}

// The final error goes to the log file only (the console gets report()'s one line).
int report(Log& log, const char* what, const Error& e) {
    log.set_console_level(0);
    log.error("cli", "{}", e.str());
    if (log.file_path().empty())
        fmt::print(stderr, "Error ({}): {}\n", what, e.str());
    else
        fmt::print(stderr, "Error ({}): {}\n  (full log: {})\n", what, e.str(), log.file_path());
    return 1;
}

int cmd_check(const CommandArgs& cmd) {
    kfc::CheckArgs a;
    a.all = cmd.check_all;
    a.ms = cmd.check_ms;
    a.feature = cmd.check_feature;
    a.json = cmd.json;
    return kfc::run_check_command(a);
}

// `dump` and `pre-dump` (memory only, the process always runs on).
// --cache-size, --cache-mode, --cache-policy (dump, pre-dump, migrate; all need --cache-dir).
struct CacheArgs {
    uint64_t size = 0;
    std::optional<CacheMode> mode;
    std::optional<EvictionPolicy> policy;
};

Expected<CacheArgs> parse_cache_args(const CommandArgs& cmd) {
    CacheArgs a;
    if (cmd.cache_size.empty() && cmd.cache_mode.empty() && cmd.cache_policy.empty())
        return a;
    if (cmd.cache_dir.empty())
        return fail(EINVAL, "--cache-size, --cache-mode and --cache-policy need --cache-dir");
    if (!cmd.cache_size.empty())
        a.size = TRY_CTX(parse_cache_size(cmd.cache_size), "--cache-size");
    if (!cmd.cache_mode.empty())
        a.mode = TRY_CTX(parse_cache_mode(cmd.cache_mode), "--cache-mode");
    if (!cmd.cache_policy.empty())
        a.policy = TRY_CTX(parse_eviction_policy(cmd.cache_policy), "--cache-policy");
    return a;
}

int cmd_dump(const CommandArgs& cmd, const Options& opts, bool pre) {
    const char* what = pre ? "pre-dump" : "dump";
    if (opts.pid <= 0) {
        fmt::print(stderr, "Error ({}): no process given: use -t PID\n", what);
        return 1;
    }
    Log log(opts.verbosity);
    open_log(log, opts, pre ? "pre-dump.log" : "dump.log");
    log.info("cli", "criu {} -t {} -D {}", what, opts.pid, opts.images_dir);
    Options o = opts;
    // --page-server --cache-dir: the page server connection with the cache is made here and
    // handed to the dump as its page sinks; the dump's own page-server path stays out of it.
    std::unique_ptr<PageServerClient> cached_ps;
    DumpHooks hooks;
    if (!cmd.cache_dir.empty() || !cmd.cache_size.empty() || !cmd.cache_mode.empty() || !cmd.cache_policy.empty()) {
        auto ca = parse_cache_args(cmd);
        if (ca && !opts.page_server)
            ca = fail(EINVAL, "--cache-dir on a dump needs --page-server: the cache's writer streams to it");
        if (ca && opts.pre_copy && !pre)
            ca = fail(EINVAL, "--cache-dir does not go with dump --pre-copy (use criu migrate)");
        if (!ca)
            return report(log, what, ca.error());
        PageServerCache pc{cmd.cache_dir, ca->size, ca->mode.value_or(CacheMode::writeback), ca->policy};
        auto ps = PageServerClient::connect(opts.address, opts.port, opts.auth_key, log, &pc);
        if (!ps)
            return report(log, what, ps.error());
        cached_ps = std::move(*ps);
        o.page_server = false;
        hooks.page_sinks = cached_ps->factory();
        hooks.before_release = [&]() -> Status { return with_context(cached_ps->close(), "page server"); };
    }
    o.reap_killed = false;  // criu exits right after: see Options::reap_killed
    auto r = pre ? run_pre_dump(o, log, hooks) : o.pre_copy ? run_pre_copy_dump(o, log) : run_dump(o, log, hooks);
    if (!r)
        return report(log, what, r.error());
    return 0;
}

int cmd_restore(const Options& opts) {
    Log log(opts.verbosity);
    open_log(log, opts, "restore.log");
    log.info("cli", "criu restore -D {}", opts.images_dir);
    auto r = run_restore(opts, log);
    if (!r) {
        return report(log, "restore", r.error());
    }
    return *r;
}

// Gives up on the TCP connections of a dump that will not be restored: removes the network lock
// its inventory names (the peers' next retransmissions then meet resets instead of silence).
int cmd_net_unlock(const Options& opts) {
    Log log(opts.verbosity);
    auto dir = ImageDir::open(opts.images_dir);
    auto inv = dir ? dir->read_inventory() : Expected<images::Inventory>(std::unexpected(dir.error()));
    if (!inv)
        return report(log, "net-unlock", inv.error());
    if (inv->tcp_lock_table().empty()) {
        fmt::print(stderr, "{}: the dump holds no TCP connections; nothing to unlock\n", opts.images_dir);
        return 0;
    }
    auto r = remove_lock_table(inv->tcp_lock_table(), log);
    if (!r)
        return report(log, "net-unlock", r.error());
    fmt::print(stderr, "the TCP connections of {} are no longer blocked (nft table inet {} removed)\n",
               opts.images_dir, inv->tcp_lock_table());
    return 0;
}

int cmd_lazy_pages(const Options& opts) {
    Log log(opts.verbosity);
    open_log(log, opts, "lazy-pages.log");
    log.info("cli", "criu lazy-pages -D {}", opts.images_dir);
    auto r = run_lazy_pages(opts, log);
    if (!r)
        return report(log, "lazy-pages", r.error());
    return *r;
}

int cmd_show(const CommandArgs& cmd, const Options& opts) {
    std::string path = cmd.args.empty() ? opts.images_dir : cmd.args[0];
    if (cmd.backtraces) {
        auto bt = unwind_image_dir(path);
        if (!bt) {
            fmt::print(stderr, "Error (show): {}\n", bt.error().str());
            return 1;
        }
        fmt::print("{}", cmd.json ? backtraces_to_json(*bt) + "\n" : backtraces_to_text(*bt));
        return 0;
    }
    auto r = show_path_json(path);
    if (!r) {
        fmt::print(stderr, "Error (show): {}\n", r.error().str());
        return 1;
    }
    fmt::print("{}\n", *r);
    return 0;
}

int cmd_page_server(const CommandArgs& cmd, const Options& opts) {
    Log log(opts.verbosity);
    open_log(log, opts, "page-server.log");
    PageServerOptions po;
    po.address = opts.address;
    po.port = opts.port;
    po.images_dir = opts.images_dir;
    po.auth_key_file = opts.auth_key;
    po.cache_dir = cmd.cache_dir;
    auto r = run_page_server(po, log);
    return r ? 0 : report(log, "page-server", r.error());
}

int cmd_serve(const CommandArgs& cmd, const Options& opts) {
    Log log(opts.verbosity);
    open_log(log, opts, "serve.log");
    ServeOptions so;
    so.listen = cmd.listen;
    so.cache_dir = cmd.cache_dir;
    so.auth_key_file = opts.auth_key;
    so.once = cmd.once;
    so.pidfile = opts.pidfile;
    so.base = opts;
    auto r = run_serve(so, log);
    return r ? 0 : report(log, "serve", r.error());
}

int cmd_migrate(const CommandArgs& cmd, const Options& opts) {
    Log log(opts.verbosity);
    open_log(log, opts, "migrate.log");
    log.info("cli", "criu migrate -t {} --to {}", opts.pid, cmd.to);
    MigrateOptions mo;
    mo.base = opts;
    mo.to = cmd.to;
    mo.auth_key_file = opts.auth_key;
    mo.cache_dir = cmd.cache_dir;
    {
        auto ca = parse_cache_args(cmd);
        if (!ca)
            return report(log, "migrate", ca.error());
        mo.cache_size = ca->size;
        if (ca->mode)
            mo.cache_mode = *ca->mode;
        mo.cache_policy = ca->policy;
    }
    mo.max_downtime_ms = static_cast<int>(opts.max_downtime_ms);
    mo.post_copy = cmd.post_copy;
    mo.lazy_restore = !cmd.no_lazy_restore;
    if (cmd.throttle && cmd.no_throttle) {
        Status bad = fail(EINVAL, "--throttle and --no-throttle contradict each other");
        return report(log, "migrate", bad.error());
    }
    if (cmd.throttle || cmd.no_throttle)
        mo.throttle = cmd.throttle;
    auto r = run_migrate(mo, log);
    return r ? 0 : report(log, "migrate", r.error());
}

}  // namespace

int run_command(const CommandArgs& cmd, const Options& opts) {
    if (cmd.name == "check")
        return cmd_check(cmd);
    if (cmd.name == "dump" || cmd.name == "pre-dump")
        return cmd_dump(cmd, opts, cmd.name == "pre-dump");
    if (cmd.name == "restore")
        return cmd_restore(opts);
    if (cmd.name == "show")
        return cmd_show(cmd, opts);
    if (cmd.name == "lazy-pages")
        return cmd_lazy_pages(opts);
    if (cmd.name == "net-unlock")
        return cmd_net_unlock(opts);
    if (cmd.name == "cache") {
        if (cmd.cache_dir.empty()) {
            fmt::print(stderr, "Error (cache): no cache given: use --cache-dir DIR\n");
            return 1;
        }
        return run_cache_command(cmd.args, cmd.cache_dir, cmd.json);
    }
    if (cmd.name == "page-server")
        return cmd_page_server(cmd, opts);
    if (cmd.name == "serve")
        return cmd_serve(cmd, opts);
    if (cmd.name == "migrate")
        return cmd_migrate(cmd, opts);
    fmt::print(stderr, "Error: unknown command '{}' (try criu --help)\n", cmd.name);
    return 1;
}

}  // namespace criu
