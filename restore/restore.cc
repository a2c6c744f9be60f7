#include "restore/restore.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include <google/protobuf/util/json_util.h>

#include "criu/files/fd_kinds.h"
#include "criu/files/net_lock.h"
#include "criu/ipc/sysv_ipc.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "proto/stats.pb.h"
#include "restore/blob_args.h"
#include "restore/blob_hole.h"
#include "restore/host_info.h"
#include "restore/lazy_pages.h"
#include "restore/page_plan.h"
#include "restore/pid_claim.h"
#include "restore/process_images.h"
#include "restore/restored_child.h"
#include "restore/restored_process.h"
#include "restore/restorer_blob.h"
#include "restore/tree_guard.h"
#include "restore/tree_plan.h"
#include "restore/validate.h"
#include "restore/vma_files.h"

namespace criu {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t us_since(Clock::time_point t) {
    return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

// Everything phase 1 produces for one process.
struct Prepared {
    RestoredProcessImages p;
    std::optional<PageReader> reader;
    PagePlan pages;
    VmaFiles files;
};

// One live process of the tree on its way: images and plans, its blob arguments, the pipes
// between criu and its restorer, and what its forked copy of criu runs.
struct TreeMember {
    Prepared pr;
    std::optional<BlobArgs> args;
    BlobFdSlots slots;
    UniqueFd report_r, report_w, go_r, go_w;
    ChildPlan plan;
};

// Images read and checked (the first half of prepare_process, for every process of a tree
// before any object is created).
Expected<Prepared> load_process(const ImageDir& dir, const images::Inventory& inv, const images::PstreeEntry& entry,
                                const HostInfo& host) {
    Prepared pr;
    pr.p = TRY(load_process_images(dir, entry));
    TRY_VOID(validate_process(inv, pr.p, host));
    return pr;
}

Status plan_process(Prepared& pr, const ImageDir& dir, const images::Inventory& inv, Log& log,
                    SharedMemObjects* shared, bool lazy) {
    const pid_t pid = pr.p.entry.pid();
    if (TRY(dir.has(ImageType::Pagemap, pid))) {
        pr.reader.emplace(TRY_CTX(PageReader::open(dir, pid), "pid {}", pid));
        pr.pages = TRY(plan_pages(*pr.reader, pr.p.mm, pid, lazy));
        if (lazy)
            log.info("restore", "pid {}: {} pages in {} VMAs left to the lazy-pages daemon", pid,
                     pr.pages.pages_lazy, pr.pages.lazy_ranges.size());
    } else {
        pr.pages.vma_filled.assign(size_t(pr.p.mm.vmas_size()), false);
        log.info("restore", "pid {}: no pagemap image: every anonymous page starts as zero", pid);
    }
    pr.files = TRY(open_vma_files(pr.p.mm, pid, inv.dump_time_unix_ns(), log, shared));
    if (shared && !shared->filled.empty()) {
        // A memfd the fds also refer to comes with its content: its pages are not filled
        // again (a write-sealed one could not even be mapped writable to fill it).
        const auto& vmas = pr.p.mm.vmas();
        for (int i = 0; i < vmas.size(); i++) {
            const auto& v = vmas[i];
            if (v.kind() != images::VMA_MEMFD_SHARED || !shared->filled.contains({v.dev(), v.shmid()}) ||
                !pr.pages.vma_filled[size_t(i)])
                continue;
            uint64_t dropped = 0;
            std::erase_if(pr.pages.runs, [&](const PlannedRun& r) {
                bool in = r.vaddr >= v.start() && r.vaddr < v.end();
                if (in && r.source >= 0)
                    dropped += r.nr_pages;
                return in;
            });
            pr.pages.vma_filled[size_t(i)] = false;
            pr.pages.pages_from_images -= std::min(dropped, pr.pages.pages_from_images);
            log.debug("restore", "pid {}: {}: the memfd its fds use already holds its {} pages", pid, v.path(), dropped);
        }
    }
    log.info("restore", "pid {}: {} threads, {} VMAs, {} pages from images in {} runs, {} zeroed", pid,
             pr.p.core.threads_size(), pr.p.mm.vmas_size(), pr.pages.pages_from_images, pr.pages.runs.size(),
             pr.pages.pages_zeroed);
    return {};
}

Expected<std::string> read_self_maps() {
    UniqueFd fd(::open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open /proc/self/maps");
    std::string s;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0)
        s.append(buf, size_t(n));
    if (n < 0)
        return fail_errno("read /proc/self/maps");
    return s;
}

Status write_pidfile(const std::string& path, pid_t pid) {
    std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd)
        return fail_errno("creating pidfile {}", tmp);
    std::string s = fmt::format("{}", pid);
    if (::write(fd.get(), s.data(), s.size()) != ssize_t(s.size()) || ::fsync(fd.get()) < 0) {
        ::unlink(tmp.c_str());
        return fail_errno("writing pidfile {}", tmp);
    }
    // Renamed into place so a reader never sees an empty or partial pid.
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        ::unlink(tmp.c_str());
        return fail_errno("renaming {} to {}", tmp, path);
    }
    return {};
}

// stats-restore.img in the image directory, and --stats-json if asked. Neither is worth failing
// a restore that succeeded.
void write_stats(const ImageDir& dir, const Options& opts, const images::RestoreStats& stats, Log& log) {
    auto w = dir.open_writer(ImageType::RestoreStats);
    Status st = w ? w->write(stats) : Status(std::unexpected(w.error()));
    if (st && w)
        st = w->close();
    if (!st)
        log.warn("restore", "cannot write restore stats: {}", st.error().str());
    if (opts.stats_json.empty())
        return;
    std::string json;
    google::protobuf::util::JsonPrintOptions jo;
    jo.add_whitespace = true;
    jo.always_print_primitive_fields = true;
    jo.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(stats, &json, jo).ok()) {
        log.warn("restore", "cannot format the restore stats as JSON");
        return;
    }
    std::ofstream f(opts.stats_json, std::ios::trunc);
    f << json;
    if (!f)
        log.warn("restore", "cannot write {}: {}", opts.stats_json, std::strerror(errno));
}

// Every System V segment a VMA attaches must be in ipc-ns.img; returns their ids.
Expected<std::set<int>> check_sysv_vmas(const images::MmInfo& mm, const std::optional<SysvIpcRestorer>& ipc,
                                        pid_t pid) {
    std::set<int> ids;
    for (const auto& v : mm.vmas()) {
        if (v.kind() != images::VMA_SYSV_SHM)
            continue;
        if (!ipc || !ipc->has_segment(int(v.shmid())))
            return failf(EINVAL, "pid {}: vma {:#x}-{:#x} attaches System V segment {}, which {}", pid, v.start(),
                         v.end(), v.shmid(), ipc ? "ipc-ns.img does not have" : "has no ipc-ns.img to come from");
        ids.insert(int(v.shmid()));
    }
    return ids;
}

// Options of `criu restore` this restore does not implement are refused, not ignored.
Status check_options(const Options& opts) {
    if (!opts.root.empty())
        return failf(ENOTSUP, "--root {}: restoring into another root directory is not supported", opts.root);
    return {};
}

}  // namespace

Expected<int> run_restore(const Options& opts, Log& log) { return run_restore(opts, log, RestoreHooks{}); }

// The restore; `lock_table` is set to the network lock of the dump's TCP connections (if any)
// while it is still in place.
static Expected<int> restore_images(const Options& opts, Log& log, const RestoreHooks& hooks, std::string& lock_table) {
    const auto t_start = Clock::now();
    TRY_VOID(check_options(opts));
    ImageDir dir = TRY(ImageDir::open(opts.images_dir));
    ImageSetHeader hdr = TRY(load_image_set_header(dir));
    lock_table = hdr.inventory.tcp_lock_table();
    if (!lock_table.empty() && !opts.tcp_established)
        return failf(ENOTSUP, "{}: the dump holds established TCP connections; restore them with --tcp-established",
                     dir.path());
    const std::vector<images::PstreeEntry>& tree = hdr.pstree;
    const images::PstreeEntry& entry = tree.front();
    const pid_t pid = entry.pid();
    if (entry.zombie())
        return failf(ENOTSUP, "pid {}: the dumped process is a zombie; there is nothing to run", pid);
    TreePlan tplan = TRY_CTX(plan_tree(tree), "{}", dir.file_path("pstree.img"));
    for (const auto& note : tplan.notes)
        log.info("restore", "{}", note);
    HostInfo host = TRY(probe_host());
    if (!hdr.inventory.kernel_release().empty() && hdr.inventory.kernel_release() != host.kernel_release)
        log.warn("restore", "dumped on kernel {}, restoring on {}: the vDSO layouts match, but its code may "
                            "differ", hdr.inventory.kernel_release(), host.kernel_release);

    // Post-copy needs its daemon: asked first, so that a missing one costs nothing.
    UniqueFd lazy_sock;
    if (opts.lazy_pages && !hooks.on_lazy)
        lazy_sock = TRY(connect_lazy_daemon(dir.path()));
    // Phase 1: everything read and checked for every process, then every object the blobs need
    // opened (shared memory once for the tree), then what processes share (pipes, open files).
    std::vector<std::unique_ptr<TreeMember>> members(tree.size());
    std::vector<pid_t> live;
    SharedMemObjects shm;
    for (size_t i = 0; i < tree.size(); i++) {
        if (tree[i].zombie())
            continue;
        members[i] = std::make_unique<TreeMember>();
        members[i]->pr = TRY(load_process(dir, hdr.inventory, tree[i], host));
        shm.note(members[i]->pr.p.mm);
        live.push_back(tree[i].pid());
    }
    // A process using its parent's fd table has no fdinfo image: the table is dumped once.
    std::vector<pid_t> table_owners;
    for (size_t i = 0; i < tree.size(); i++)
        if (!tree[i].zombie() && !tree[i].shares_files_with_parent())
            table_owners.push_back(tree[i].pid());
    FilesRestorer files = TRY(FilesRestorer::load(dir.fd(), table_owners, log));
    shm.memfd_object = [&](uint64_t dev, uint64_t ino) { return files.memfd_for(dev, ino, log); };
    uint64_t pages_total = 0;
    for (auto& m : members)
        if (m) {
            TRY_VOID(plan_process(m->pr, dir, hdr.inventory, log, &shm, opts.lazy_pages));
            pages_total += m->pr.pages.pages_from_images;
        }
    shm.fds.clear();  // every process holds its own reference now
    if (live.size() > 1)
        TRY_VOID(files.prepare_shared(log));
    std::optional<SysvIpcRestorer> ipc = TRY(SysvIpcRestorer::load(dir.fd(), log));
    // The IPC namespace is made once, by the root, before it forks the rest of the tree; it
    // keeps every segment some process of the tree attaches.
    std::set<int> sysv_attached;
    for (auto& m : members)
        if (m) {
            std::set<int> a = TRY(check_sysv_vmas(m->pr.p.mm, ipc, m->pr.p.entry.pid()));
            sysv_attached.insert(a.begin(), a.end());
        }
    std::set<int> sysv_removed;
    if (ipc)
        for (const auto& s : ipc->image().shms())
            if (s.destroyed())
                sysv_removed.insert(s.perm().id());
    // The pids first: when a whole restored copy still runs, that is what the user should read.
    const auto t_wait = Clock::now();
    for (const auto& e : tree) {
        TRY_VOID(wait_pid_free(e.pid(), "pid", log));
        for (int i = 1; i < e.threads_size(); i++)
            TRY_VOID(wait_pid_free(e.threads(i), "tid", log));
    }
    for (pid_t h : tplan.helper_pids)
        TRY_VOID(wait_pid_free(h, "pid", log));
    const uint64_t t_wait_us = us_since(t_wait);

    // Mapped before criu's own ranges are read: the blob areas must not land on it.
    std::optional<SharedFdTables> fd_tables;
    if (std::any_of(tplan.procs.begin(), tplan.procs.end(), [](const auto& fp) { return !fp.files_users.empty(); })) {
        size_t max_slots = 0;
        for (auto& m : members)
            if (m)
                max_slots = std::max(max_slots, 2 + m->pr.pages.sources.size() + m->pr.files.fds.size());
        fd_tables.emplace(TRY(SharedFdTables::create(tree.size(), max_slots)));
    }
    auto own = TRY(parse_maps_ranges(TRY(read_self_maps())));
    std::span<const uint8_t> code = restorer_blob_code();
    RestoreTree rt;
    rt.plan = &tplan;
    rt.pstree = &tree;
    rt.root_pid = pid;
    rt.fd_tables = fd_tables ? &*fd_tables : nullptr;
    rt.children.assign(tree.size(), nullptr);
    for (size_t i = 0; i < tree.size(); i++) {
        if (!members[i])
            continue;
        TreeMember& m = *members[i];
        const pid_t mpid = tree[i].pid();
        int report_pipe[2], go_pipe[2];
        if (::pipe2(report_pipe, O_CLOEXEC) < 0)
            return fail_errno("creating the restorer's pipes");
        m.report_r.reset(report_pipe[0]);
        m.report_w.reset(report_pipe[1]);
        if (::pipe2(go_pipe, O_CLOEXEC) < 0)
            return fail_errno("creating the restorer's pipes");
        m.go_r.reset(go_pipe[0]);
        m.go_w.reset(go_pipe[1]);
        m.slots.report_fd = m.report_w.get();
        m.slots.go_fd = m.go_r.get();
        m.slots.page_sources = m.pr.pages.sources;
        for (const auto& fd : m.pr.files.fds)
            m.slots.vma_objects.push_back(fd.get());
        BlobArgsInput in{&m.pr.p, &host, &m.pr.pages, &m.pr.files, &m.slots, code.size(), i == 0};
        in.sysv_removed = &sysv_removed;
        m.args.emplace(TRY(BlobArgs::build(in)));
        uint64_t base = TRY_CTX(find_blob_hole(m.pr.p.mm, own, m.args->area_size()), "pid {}", mpid);
        m.args->place(base);
        log.info("restore", "pid {}: restorer area {:#x}-{:#x} ({} KiB, args {} bytes)", mpid, base,
                 base + m.args->area_size(), m.args->area_size() / 1024, m.args->bytes().size());
        m.plan.opts = &opts;
        m.plan.p = &m.pr.p;
        m.plan.args = &*m.args;
        m.plan.code = code;
        m.plan.slot_fds = m.slots.all();
        m.plan.files = &files;
        m.plan.criu_pid = i == 0 ? ::getpid() : tree[i].ppid();
        m.plan.tree = tree.size() > 1 ? &rt : nullptr;
        m.plan.tree_index = i;
        m.plan.ipc = i == 0 && ipc ? &*ipc : nullptr;
        m.plan.sysv_attached = &sysv_attached;
        rt.children[i] = &m.plan;
    }
    const uint64_t t_prepare_us = us_since(t_start) - t_wait_us;

    // Phase 2: the root with its pid; it forks the rest of the tree (restore/tree_fork.cc).
    // criu stays a subreaper until the tree is whole, so that a failure anywhere can kill
    // every process created.
    std::optional<TreeGuard> guard;
    if (tree.size() > 1)
        guard.emplace(TRY(TreeGuard::arm(log)));
    const auto t_fork = Clock::now();
    UniqueFd pidfd;
    pid_t child = TRY(fork_with_pid(pid, pidfd, log));
    if (child == 0)
        run_restored_child(members[0]->plan, log);
    const uint64_t t_fork_us = us_since(t_fork);  // includes waiting for a dying holder of the pid
    for (auto& m : members)
        if (m) {
            m->report_w.reset();
            m->go_r.reset();
        }
    std::vector<std::unique_ptr<RestoredProcess>> procs;
    std::vector<const TreeMember*> proc_members;  // parallel to procs
    for (size_t i = 0; i < tree.size(); i++) {
        if (!members[i])
            continue;
        TreeMember& m = *members[i];
        proc_members.push_back(&m);
        procs.push_back(std::make_unique<RestoredProcess>(tree[i].pid(), i == 0 ? std::move(pidfd) : UniqueFd(),
                                                          m.pr.p, *m.args, std::move(m.report_r),
                                                          std::move(m.go_w), log));
    }
    log.debug("restore", "pid {}: forked, waiting for the restorers of {} processes", pid, procs.size());

    // Phase 3 runs in every process at once; each reports ready once its threads are prepared.
    for (size_t k = 0; k < procs.size(); k++) {
        if (!opts.lazy_pages) {
            TRY_VOID(procs[k]->wait_ready());
            continue;
        }
        const Prepared& mp = proc_members[k]->pr;
        TRY_VOID(procs[k]->wait_ready([&](UniqueFd uffd) {
            if (hooks.on_lazy)
                return hooks.on_lazy(mp.p.entry.pid(), std::move(uffd), mp.pages.lazy_ranges);
            return send_lazy_process(lazy_sock.get(), mp.p.entry.pid(), uffd.get(), mp.pages.lazy_ranges);
        }));
    }
    lazy_sock.reset();  // everything is handed over: the daemon exits once all is filled
    const uint64_t t_ready_us = us_since(t_fork) - t_fork_us;
    // Live migration holds the whole tree here until the source has let go (RestoreHooks).
    if (hooks.before_release)
        TRY_VOID_CTX(hooks.before_release(pid), "pid {} restored but not released", pid);
    // Phase 4: all ready, now all released, the blob area removed behind each.
    bool area_removed = true;
    for (auto& proc : procs)
        area_removed = TRY(proc->release()) && area_removed;
    if (!opts.pidfile.empty())
        TRY_VOID(write_pidfile(opts.pidfile, pid));
    for (auto& proc : procs)
        proc->disarm();
    if (guard)
        guard->disarm();
    if (!lock_table.empty()) {
        // The tree runs: its TCP connections may talk again.
        if (auto st = remove_lock_table(lock_table, log); !st)
            log.warn("restore", "{}; the restored TCP connections stay blocked until `criu net-unlock -D {}`",
                     st.error().str(), dir.path());
        lock_table.clear();
    }

    images::RestoreStats stats;
    stats.set_total_time_us(us_since(t_start));
    stats.set_forking_time_us(t_wait_us + t_fork_us);
    stats.set_restore_time_us(us_since(t_fork) - t_fork_us);
    stats.set_pages_restored(pages_total);
    stats.set_tasks(uint32_t(live.size()));
    write_stats(dir, opts, stats, log);
    log.info("restore", "pid {} restored ({} processes, {} zombies, {} threads in the root) in {} us (images and "
                        "planning {} us, waiting for the pids {} us, fork {} us, restorers until ready {} us, release "
                        "{} us){}", pid, live.size(), tree.size() - live.size(), entry.threads_size(),
             stats.total_time_us(), t_prepare_us, t_wait_us, t_fork_us, t_ready_us,
             stats.restore_time_us() - t_ready_us, area_removed ? "" : "; a restorer area was left mapped");

    if (opts.restore_detached)
        return 0;  // criu exits; the root is reparented to the nearest subreaper or init
    return wait_for_exit(pid, log);
}

Expected<int> run_restore(const Options& opts, Log& log, const RestoreHooks& hooks) {
    std::string lock_table;
    auto r = restore_images(opts, log, hooks, lock_table);
    if (!r && !lock_table.empty())
        r.error().add_context(fmt::format("the dumped TCP connections stay blocked (nft table inet {}; their peers "
                                          "see a pause, not a reset) until a restore succeeds or `criu net-unlock "
                                          "-D {}` gives up on them", lock_table, opts.images_dir));
    return r;
}

}  // namespace criu
