#include "criu/dump/dump.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <future>
#include <memory>

#include <fmt/ranges.h>
#include <google/protobuf/util/json_util.h>

#include "criu/core/proc_parse.h"
#include "criu/core/remote_syscalls.h"
#include "criu/dump/incremental.h"
#include "criu/dump/page_dumper.h"
#include "criu/dump/page_hashes.h"
#include "criu/dump/process_state.h"
#include "criu/dump/process_tree.h"
#include "criu/dump/thread_state.h"
#include "criu/ipc/sysv_ipc.h"
#include "criu/ipc/sysv_semadj.h"
#include "images/image_io.h"
#include "images/page_reader.h"
#include "migrate/net/page_server.h"

namespace criu {

namespace {

constexpr const char* kToolVersion = "0.1";
constexpr size_t kXcr0Offset = 464;  // ptrace's XSAVE buffer keeps XCR0 in sw_reserved[0]

Status dump_remote_state(DumpContext& ctx, SeizedProcess& sp, const ProcStat& stat, const ProcStatus& status,
                         ProcessImages& out) {
    const auto& threads = sp.threads();
    RemoteSyscalls rs = TRY(RemoteSyscalls::open(sp.main_thread(), ctx.log));
    TRY_VOID(ctx.checkpoint("remote"));
    TRY_VOID_CTX(dump_thread_remote_state(rs, *out.core.mutable_threads(0)), "tid {}", sp.pid());
    TRY_VOID(dump_process_state(sp, rs, stat, status, out.core, ctx.log));
    TRY_VOID(dump_mm_fields(sp.pid(), rs, stat, out.mm));
    TRY_VOID(dump_semadj(sp.pid(), rs, out.core, ctx.log));
    if (threads.size() == 1)
        TRY_VOID(ctx.checkpoint("sibling"));
    for (size_t i = 1; i < threads.size(); ++i) {
        RemoteSyscalls sib = TRY(RemoteSyscalls::open_sibling(*threads[i], rs, ctx.log));
        if (i == 1)
            TRY_VOID(ctx.checkpoint("sibling"));
        TRY_VOID_CTX(dump_thread_remote_state(sib, *out.core.mutable_threads(static_cast<int>(i))), "tid {}",
                     threads[i]->tid());
        TRY_VOID(sib.close());
    }
    return rs.close();
}

images::Inventory make_inventory(const ProcessImages& root) {
    images::Inventory inv;
    inv.set_root_pid(root.core.pid());
    inv.set_tool_version(kToolVersion);
    utsname u{};
    if (uname(&u) == 0)
        inv.set_kernel_release(u.release);
    inv.set_dump_time_unix_ns(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count()));
    inv.set_pre_dump(false);
    inv.set_page_size(static_cast<uint32_t>(sysconf(_SC_PAGESIZE)));
    // The XSAVE layout the images carry is the one ptrace gave for these threads (none in a
    // pre-dump, which holds memory only).
    const std::string xs = root.core.threads_size() ? root.core.threads(0).xsave() : std::string();
    inv.set_xsave_size(xs.size());
    if (xs.size() >= kXcr0Offset + 8) {
        uint64_t xcr0 = 0;
        std::memcpy(&xcr0, xs.data() + kXcr0Offset, sizeof(xcr0));
        inv.set_xcr0(xcr0);
    }
    *inv.mutable_vdso() = vdso_layout(root.vmas);
    return inv;
}

// Creates the image directory and removes an inventory left by an earlier dump, which would
// make a half-written new set look valid.
Expected<ImageDir> prepare_image_dir(const Options& opts) {
    ImageDir dir = TRY(ImageDir::create(opts.images_dir));
    if (unlinkat(dir.fd(), image_file_name(ImageType::Inventory).c_str(), 0) < 0 && errno != ENOENT)
        return fail_errno("cannot remove the old inventory in {}", dir.path());
    return dir;
}

template <class Msg>
Status write_one(const ImageDir& dir, ImageType type, int64_t id, const Msg& msg) {
    ImageWriter w = TRY(dir.open_writer(type, id));
    TRY_VOID(w.write(msg));
    return w.close();
}

void write_stats(DumpContext& ctx) {
    auto r = write_one(ctx.dir, ImageType::DumpStats, -1, ctx.stats);
    if (!r)
        ctx.log.warn("dump", "cannot write the dump stats: {}", r.error().str());
    if (ctx.opts.stats_json.empty())
        return;
    std::string json;
    google::protobuf::util::JsonPrintOptions jo;
    jo.add_whitespace = true;
    jo.always_print_primitive_fields = true;
    jo.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(ctx.stats, &json, jo).ok()) {
        ctx.log.warn("dump", "cannot format the dump stats as JSON");
        return;
    }
    std::ofstream f(ctx.opts.stats_json, std::ios::trunc);
    f << json;
    if (!f)
        ctx.log.warn("dump", "cannot write {}: {}", ctx.opts.stats_json, std::strerror(errno));
}

// --page-server: pages go to the page server at --address:--port, the rest stays local.
Expected<std::unique_ptr<PageServerClient>> connect_page_server(const Options& opts, DumpContext& ctx) {
    if (!opts.page_server)
        return std::unique_ptr<PageServerClient>();
    auto ps = TRY(PageServerClient::connect(opts.address, opts.port, opts.auth_key, ctx.log));
    ctx.page_sinks = ps->factory();
    return ps;
}

}  // namespace

Status preflight(pid_t pid, const Options& opts, Log& log, std::vector<DumpVma>* vmas_out) {
    std::vector<std::string> problems;
    auto note = [&](Status s) {
        if (!s)
            problems.push_back(s.error().str());
    };
    Status proc = preflight_process(pid);
    if (!proc && proc.error().err() == ESRCH)
        return proc;
    note(std::move(proc));
    note(preflight_fds(pid, opts, log));
    note(preflight_sysv_ipc(pid));
    auto vmas = collect_vmas(pid);
    if (!vmas)
        note(std::unexpected(std::move(vmas.error())));
    else if (vmas_out)
        *vmas_out = std::move(*vmas);
    if (problems.empty())
        return {};
    std::string msg = problems[0];
    for (size_t i = 1; i < problems.size(); ++i)
        msg += "; " + problems[i];
    return failf(ENOTSUP, "pid {} cannot be dumped: {}", pid, msg);
}

Status preflight_tree(pid_t root, const Options& opts, Log& log, std::vector<DumpVma>* root_vmas) {
    std::vector<TreeMember> members = TRY_CTX(list_tree(root), "pid {}", root);
    std::vector<std::string> problems;
    std::vector<TreeMember> live;
    for (const TreeMember& m : members) {
        if (m.zombie)
            continue;
        Status st = preflight(m.pid, opts, log, m.pid == root ? root_vmas : nullptr);
        if (!st) {
            // The root must exist; a member that exited since the listing is no blocker.
            if (st.error().err() == ESRCH && m.pid != root)
                continue;
            if (m.pid == root && members.size() == 1)
                return st;
            problems.push_back(st.error().message());
            continue;
        }
        live.push_back(m);
    }
    for (auto& p : tree_sharing_problems(live))
        problems.push_back(std::move(p));
    if (problems.empty()) {
        log.info("dump", "pre-flight: the {} processes of the tree of pid {} can be dumped", members.size(), root);
        return {};
    }
    for (const auto& p : problems)
        log.error("dump", "{}", p);
    if (problems.size() == 1 && members.size() == 1)
        return failf(ENOTSUP, "{}", problems[0]);
    std::string msg = problems[0];
    for (size_t i = 1; i < problems.size(); ++i)
        msg += "; " + problems[i];
    return failf(ENOTSUP, "the tree of pid {} ({} processes) cannot be dumped: {}", root, members.size(), msg);
}

Status dump_process(DumpContext& ctx, SeizedProcess& sp, FilesDumper& files, ProcessImages& out) {
    TRY_VOID(dump_process_state(ctx, sp, out));
    TRY_VOID(dump_process_pages(ctx, sp, out));
    return dump_process_files(ctx, sp, files, out);
}

Status dump_process_state(DumpContext& ctx, SeizedProcess& sp, ProcessImages& out) {
    pid_t pid = sp.pid();
    TRY_VOID(ctx.checkpoint("threads"));
    ProcStat stat = TRY(read_stat(pid));
    ProcStatus status = TRY(read_status(pid));
    out.pstree.set_pid(pid);
    out.pstree.set_ppid(0);  // root of the dump
    out.pstree.set_pgid(stat.pgrp);
    out.pstree.set_sid(stat.session);
    // Everything readable without running code comes first, while the registers are untouched.
    for (const auto& t : sp.threads()) {
        out.pstree.add_threads(t->tid());
        TRY_VOID_CTX(dump_thread_ptrace_state(*t, *out.core.add_threads(), ctx.log), "tid {} of pid {}", t->tid(), pid);
    }

    TRY_VOID(dump_remote_state(ctx, sp, stat, status, out));

    // The remote area is gone again, so the VMA list is the process's own.
    TRY_VOID(ctx.checkpoint("mm"));
    if (out.vmas_hint) {
        bool reused = false;
        out.vmas = TRY(collect_vmas_reusing(pid, *out.vmas_hint, &reused));
        ctx.log.debug("dump", "pid {}: memory map {}", pid,
                      reused ? "as in the pre-flight (maps unchanged)" : "changed since the pre-flight: smaps read");
    } else {
        out.vmas = TRY(collect_vmas(pid));
    }
    if (out.shared_dumped) {
        // Pages of shared memory go into the images once, with the first process that maps it.
        std::set<std::pair<uint64_t, uint64_t>> mine;
        for (DumpVma& v : out.vmas) {
            if (v.pages != PagePolicy::Shared)
                continue;
            auto key = std::make_pair(v.vma.dev(), v.vma.shmid());
            if (out.shared_dumped->contains(key))
                v.pages = PagePolicy::None;
            else
                mine.insert(key);
        }
        out.shared_dumped->insert(mine.begin(), mine.end());
    }
    for (const DumpVma& v : out.vmas)
        *out.mm.add_vmas() = v.vma;
    return {};
}

Status dump_process_pages(DumpContext& ctx, SeizedProcess& sp, ProcessImages& out) {
    return dump_pages(ctx, sp.main_thread(), out.vmas, out.mm, out.parent_hashes, out.hashes,
                      out.incremental ? out.incremental->plan() : nullptr);
}

Status dump_process_files(DumpContext& ctx, SeizedProcess& sp, FilesDumper& files, ProcessImages& out) {
    TRY_VOID(ctx.checkpoint("fds"));
    // A table shared with the parent is dumped once, with the topmost process using it.
    if (!out.pstree.shares_files_with_parent())
        TRY_VOID(files.dump_process_fds(sp.pid(), ctx.opts, ctx.log, ctx.dir.fd()));
    return dump_fs_info(sp.pid(), out.fs);
}

Status write_process_images(DumpContext& ctx, const ProcessImages& img) {
    pid_t pid = img.core.pid();
    TRY_VOID(write_one(ctx.dir, ImageType::Core, pid, img.core));
    TRY_VOID(write_one(ctx.dir, ImageType::Mm, pid, img.mm));
    TRY_VOID(write_one(ctx.dir, ImageType::Fs, pid, img.fs));
    return {};
}

Status run_dump(const Options& opts, Log& log, LiveTracking* live_tracking) {
    DumpHooks hooks;
    hooks.live_tracking = live_tracking;
    return run_dump(opts, log, hooks);
}

Status run_dump(const Options& opts, Log& log, const DumpHooks& hooks) {
    LiveTracking* live_tracking = hooks.live_tracking;
    InterruptGuard interrupt_guard;
    auto started = std::chrono::steady_clock::now();
    pid_t pid = opts.pid;
    if (pid <= 0)
        return failf(EINVAL, "no process to dump (pid {})", pid);

    // An incremental dump (the final step of a pre-copy dump or of a migration, dump
    // --prev-images-dir) keeps the root's memory map read here: frozen, only /proc/PID/maps is
    // then read to see that it still holds (no smaps page walk, ~8-40 ms per GiB).
    std::vector<DumpVma> root_vmas;
    const bool keep_vmas = live_tracking || !opts.prev_images_dir.empty();
    Status pre = preflight_tree(pid, opts, log, keep_vmas ? &root_vmas : nullptr);
    if (opts.dry_run) {
        if (pre)
            log.info("dump", "dry run: the tree of pid {} can be dumped", pid);
        return pre;
    }
    TRY_VOID(pre);

    DumpContext ctx(opts, log, TRY(prepare_image_dir(opts)), kfc::KernelFeatures::detect());
    ctx.started = started;
    TRY_VOID(ctx.checkpoint("preflight"));
    auto page_server = TRY(connect_page_server(opts, ctx));
    if (hooks.page_sinks)
        ctx.page_sinks = hooks.page_sinks;
    ctx.page_hashes = hooks.page_hashes;
    // The root's parent set is read before anything is frozen; the other members' once known.
    auto root_inc = TRY(IncrementalDump::prepare(ctx, pid, IncrementalDump::Kind::Dump, live_tracking));

    TRY_VOID(ctx.checkpoint("seize"));
    auto t_seize = std::chrono::steady_clock::now();
    std::unique_ptr<SeizedTree> tree = TRY_CTX(SeizedTree::seize(pid, log), "dumping pid {}", pid);
    ctx.stats.set_freezing_time_us(micros_since(t_seize));
    auto frozen_since = std::chrono::steady_clock::now();
    // The pre-flight saw a running tree; now that it stands still, look again at what its
    // processes share.
    std::vector<TreeMember> live;
    for (const TreeMember& m : tree->members())
        if (!m.zombie)
            live.push_back(m);
    if (auto problems = tree_sharing_problems(live); !problems.empty())
        return failf(ENOTSUP, "the tree of pid {} cannot be dumped: {}", pid, fmt::join(problems, "; "));
    if (hooks.on_frozen)
        hooks.on_frozen();

    FilesDumper files;
    std::set<std::pair<uint64_t, uint64_t>> shared_dumped;
    std::vector<images::PstreeEntry> pstree;
    // One live process on its way: its images and its relation to the parent set (hashes,
    // dirty tracking) until they are written.
    struct Member {
        ProcessImages img;
        std::unique_ptr<IncrementalDump> inc;
    };
    std::vector<std::unique_ptr<Member>> done(tree->members().size());
    auto finish_member = [&](size_t i) -> Status {
        Member& mb = *done[i];
        const pid_t mpid = tree->members()[i].pid;
        TRY_VOID_CTX(mb.inc->finish(), "dumping pid {}", mpid);
        TRY_VOID_CTX(write_process_images(ctx, mb.img), "dumping pid {}", mpid);
        pstree[i] = mb.img.pstree;
        return {};
    };
    // The pages of one process are written on a thread of their own while the next process's
    // state, memory map and fds are read (ptrace must stay on this thread; reading memory
    // and PAGEMAP_SCAN need not): one page job at a time, joined before the next starts and
    // on every error path (the future's destructor) before anything it uses goes away.
    std::future<Status> pages_job;
    size_t pages_of = 0;
    auto join_pages = [&]() -> Status {
        if (!pages_job.valid())
            return {};
        Status st = pages_job.get();
        TRY_VOID_CTX(std::move(st), "dumping pid {}", tree->members()[pages_of].pid);
        return finish_member(pages_of);
    };
    pstree.resize(tree->members().size());
    for (size_t i = 0; i < tree->members().size(); ++i) {
        const TreeMember& m = tree->members()[i];
        if (m.zombie) {
            images::PstreeEntry& e = pstree[i];
            e.set_pid(m.pid);
            e.set_ppid(m.ppid);
            e.set_pgid(m.pgid);
            e.set_sid(m.sid);
            e.add_threads(m.pid);
            e.set_zombie(true);
            e.set_exit_code(m.exit_status);
            e.set_comm(m.comm);
            continue;
        }
        done[i] = std::make_unique<Member>();
        Member& mb = *done[i];
        mb.inc = m.pid == pid ? std::move(root_inc)
                              : TRY(IncrementalDump::prepare(ctx, m.pid, IncrementalDump::Kind::Dump));
        mb.img.parent_hashes = mb.inc->parent_hashes();
        mb.img.hashes = mb.inc->hashes();
        mb.img.incremental = mb.inc.get();
        if (m.pid == pid && !root_vmas.empty())
            mb.img.vmas_hint = &root_vmas;
        mb.img.shared_dumped = &shared_dumped;
        TRY_VOID_CTX(dump_process_state(ctx, *m.sp, mb.img), "dumping pid {}", m.pid);
        mb.img.pstree.set_ppid(m.ppid);
        ParentSharing shares = parent_sharing(m);
        mb.img.pstree.set_shares_files_with_parent(shares.files);
        mb.img.pstree.set_shares_fs_with_parent(shares.fs);
        if (shares.files || shares.fs)
            log.info("dump", "pid {} shares {}{}{} with its parent {}", m.pid, shares.files ? "its fd table" : "",
                     shares.files && shares.fs ? " and " : "", shares.fs ? "cwd, root and umask" : "", m.ppid);
        TRY_VOID_CTX(dump_process_files(ctx, *m.sp, files, mb.img), "dumping pid {}", m.pid);
        TRY_VOID(join_pages());
        // Nothing runs in this process any more: collect its dirty pages now (or arm tracking
        // for the next dump), on this thread, which owns ptrace.
        TRY_VOID_CTX(mb.inc->before_pages(*m.sp), "dumping pid {}", m.pid);
        pages_of = i;
        SeizedProcess* sp = m.sp;
        pages_job = std::async(std::launch::async, [&ctx, sp, &mb] { return dump_process_pages(ctx, *sp, mb.img); });
    }
    TRY_VOID(join_pages());
    ProcessImages& root_img = done[0]->img;
    TRY_VOID(ctx.checkpoint("images"));
    TRY_VOID_CTX(files.finish(ctx.dir.fd()), "dumping pid {}", pid);
    TRY_VOID(ctx.checkpoint("ipc"));
    TRY_VOID_CTX(dump_sysv_ipc(pid, ctx.dir.fd(), log), "dumping pid {}", pid);
    {
        ImageWriter w = TRY(ctx.dir.open_writer(ImageType::Pstree, -1));
        for (const auto& e : pstree)
            TRY_VOID(w.write(e));
        TRY_VOID(w.close());
    }
    TRY_VOID(ctx.checkpoint("inventory"));
    images::Inventory inv = make_inventory(root_img);
    inv.set_parent_dir(opts.prev_images_dir);
    inv.set_tcp_lock_table(files.tcp_lock_table());
    done[0]->inc->describe(inv);
    TRY_VOID(ctx.dir.write_inventory(inv));
    if (page_server)
        TRY_VOID_CTX(page_server->close(), "page server");
    if (hooks.before_release)
        TRY_VOID(hooks.before_release());

    // The image set is complete: from here the tree is either gone or running again.
    size_t nthreads = tree->thread_count();
    size_t nprocs = tree->live_count();
    // The frozen interval ends when the tree runs again or can never run again (SIGKILL
    // sent); collecting the exits of killed processes (their memory torn down) comes after.
    if (opts.leave_running) {
        // TCP connections leave repair mode and the lock before anything runs (send() fails in
        // repair mode).
        TRY_VOID_CTX(files.release_tcp(false, log), "giving the TCP connections back to the tree of pid {}", pid);
        TRY_VOID_CTX(tree->resume(), "resuming the tree of pid {} after the dump", pid);
        ctx.stats.set_frozen_time_us(micros_since(frozen_since));
    } else {
        TRY_VOID_CTX(tree->kill(
                         [&] {
                             ctx.stats.set_frozen_time_us(micros_since(frozen_since));
                             if (hooks.on_killed)
                                 hooks.on_killed();
                         },
                         opts.reap_killed),
                     "killing the tree of pid {} after the dump", pid);
        // Only now: had the kill failed, the tree would run on and get its connections back.
        TRY_VOID(files.release_tcp(true, log));
    }
    ctx.stats.set_tasks(static_cast<uint32_t>(nprocs));
    ctx.stats.set_threads(static_cast<uint32_t>(nthreads));
    ctx.stats.set_total_time_us(micros_since(started));
    write_stats(ctx);
    if (hooks.stats_out)
        *hooks.stats_out = ctx.stats;
    log.info("dump", "pid {} dumped ({} process(es), {} zombie(s), {} thread(s), {} pages written, {} as in the "
                     "parent, frozen {:.1f} ms){}", pid, nprocs, pstree.size() - nprocs, nthreads,
             ctx.stats.pages_written(), ctx.stats.pages_skipped_parent(), ctx.stats.frozen_time_us() / 1000.0,
             opts.leave_running ? ", left running" : ", killed");
    return {};
}

Status run_pre_dump(const Options& opts, Log& log) { return run_pre_dump(opts, log, DumpHooks{}); }

Status run_pre_dump(const Options& opts, Log& log, const DumpHooks& hooks) {
    InterruptGuard interrupt_guard;
    auto started = std::chrono::steady_clock::now();
    pid_t pid = opts.pid;
    if (pid <= 0)
        return failf(EINVAL, "no process to pre-dump (pid {})", pid);
    // The same blockers as a dump: a pre-dump whose final dump is bound to fail helps nobody.
    TRY_VOID(preflight(pid, opts, log));
    DumpContext ctx(opts, log, TRY(prepare_image_dir(opts)), kfc::KernelFeatures::detect());
    ctx.started = started;
    auto page_server = TRY(connect_page_server(opts, ctx));
    if (hooks.page_sinks)
        ctx.page_sinks = hooks.page_sinks;
    ctx.page_hashes = hooks.page_hashes;
    auto inc = TRY(IncrementalDump::prepare(ctx, pid, IncrementalDump::Kind::PreDump));

    // Stopped only for the dirty-tracking step, if at all. With the parent's tracking agent,
    // not at all: its collect reports the pages written since the parent and write-protects
    // them again page by page, atomically, so a page written after its turn is the next
    // increment's and one written before is in this dirty set and copied after the collect
    // (that is, at least as new). Otherwise the process is stopped to start a new tracker
    // (one injected userfaultfd(); the write-protection is armed after it runs again, before
    // the copy) or to read soft-dirty bits. The pages are always copied while it runs.
    ProcessImages img;
    img.core.set_pid(pid);
    img.pstree.set_pid(pid);
    TRY_VOID(ctx.checkpoint("seize"));
    if (inc->collect_while_running()) {
        for (pid_t tid : TRY_CTX(list_tasks(pid), "pre-dumping pid {}", pid))
            img.pstree.add_threads(tid);
        ctx.stats.set_frozen_time_us(0);
        TRY_VOID(ctx.checkpoint("mm"));
    } else {
        auto t_seize = std::chrono::steady_clock::now();
        std::unique_ptr<SeizedProcess> sp = TRY_CTX(SeizedProcess::seize(pid, log), "pre-dumping pid {}", pid);
        if (hooks.on_frozen)
            hooks.on_frozen();
        ctx.stats.set_freezing_time_us(micros_since(t_seize));
        auto frozen_since = std::chrono::steady_clock::now();
        for (const auto& t : sp->threads())
            img.pstree.add_threads(t->tid());
        TRY_VOID(ctx.checkpoint("mm"));
        TRY_VOID_CTX(inc->before_pages(*sp), "pre-dumping pid {}", pid);
        TRY_VOID_CTX(sp->resume(), "resuming pid {} after starting dirty tracking", pid);
        ctx.stats.set_frozen_time_us(micros_since(frozen_since));
        inc->after_resume();
    }

    // The memory map after the tracking step (see pre_copy.cc for why this order).
    img.vmas = TRY_CTX(collect_vmas(pid), "pre-dumping pid {}", pid);
    for (const DumpVma& v : img.vmas)
        *img.mm.add_vmas() = v.vma;
    RangeSet unreadable;
    TRY_VOID_CTX(dump_pages(ctx, pid, img.vmas, img.mm, inc->parent_hashes(), inc->hashes(), inc->plan(), &unreadable),
                 "pre-dumping pid {}", pid);
    if (!unreadable.empty())
        log.info("dump", "pid {}: {} pages unmapped while they were copied: left out (the next dump reads what is "
                         "there then)", pid, unreadable.pages());
    TRY_VOID(ctx.checkpoint("images"));
    TRY_VOID(inc->finish());
    TRY_VOID(write_one(ctx.dir, ImageType::Mm, pid, img.mm));
    TRY_VOID(write_one(ctx.dir, ImageType::Pstree, -1, img.pstree));
    TRY_VOID(ctx.checkpoint("inventory"));
    images::Inventory inv = make_inventory(img);
    inv.set_pre_dump(true);
    inv.set_parent_dir(opts.prev_images_dir);
    inc->describe(inv);
    TRY_VOID(ctx.dir.write_inventory(inv));
    if (page_server)
        TRY_VOID_CTX(page_server->close(), "page server");
    if (hooks.before_release)
        TRY_VOID(hooks.before_release());

    ctx.stats.set_tasks(1);
    ctx.stats.set_threads(static_cast<uint32_t>(img.pstree.threads_size()));
    ctx.stats.set_total_time_us(micros_since(started));
    write_stats(ctx);
    if (hooks.stats_out)
        *hooks.stats_out = ctx.stats;
    log.info("dump", "pid {} pre-dumped ({} pages written, {} as in the parent, frozen {:.1f} ms)", pid,
             ctx.stats.pages_written(), ctx.stats.pages_skipped_parent(), ctx.stats.frozen_time_us() / 1000.0);
    return {};
}

}  // namespace criu
