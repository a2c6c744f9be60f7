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
#include "criu/ipc/sysv_ipc.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "proto/stats.pb.h"
#include "restore/blob_args.h"
#include "restore/blob_hole.h"
#include "restore/host_info.h"
#include "restore/page_plan.h"
#include "restore/pid_claim.h"
#include "restore/process_images.h"
#include "restore/restored_child.h"
#include "restore/restored_process.h"
#include "restore/restorer_blob.h"
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

Expected<Prepared> prepare_process(const ImageDir& dir, const images::Inventory& inv,
                                   const images::PstreeEntry& entry, const HostInfo& host, Log& log) {
    Prepared pr;
    const pid_t pid = entry.pid();
    pr.p = TRY(load_process_images(dir, entry));
    TRY_VOID(validate_process(inv, pr.p, host));
    if (TRY(dir.has(ImageType::Pagemap, pid))) {
        pr.reader.emplace(TRY_CTX(PageReader::open(dir, pid), "pid {}", pid));
        pr.pages = TRY(plan_pages(*pr.reader, pr.p.mm, pid));
    } else {
        pr.pages.vma_filled.assign(size_t(pr.p.mm.vmas_size()), false);
        log.info("restore", "pid {}: no pagemap image: every anonymous page starts as zero", pid);
    }
    pr.files = TRY(open_vma_files(pr.p.mm, pid, inv.dump_time_unix_ns(), log));
    log.info("restore", "pid {}: {} threads, {} VMAs, {} pages from images in {} runs, {} zeroed", pid,
             pr.p.core.threads_size(), pr.p.mm.vmas_size(), pr.pages.pages_from_images, pr.pages.runs.size(),
             pr.pages.pages_zeroed);
    return pr;
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
    if (opts.lazy_pages)
        return fail(ENOTSUP, "--lazy-pages: post-copy restore is not supported");
    return {};
}

}  // namespace

Expected<int> run_restore(const Options& opts, Log& log) {
    const auto t_start = Clock::now();
    TRY_VOID(check_options(opts));
    ImageDir dir = TRY(ImageDir::open(opts.images_dir));
    ImageSetHeader hdr = TRY(load_image_set_header(dir));
    if (hdr.pstree.size() != 1)
        return failf(ENOTSUP, "{}: the dump holds {} processes; this criu restores a single process (with any "
                              "number of threads)", dir.file_path("pstree.img"), hdr.pstree.size());
    const images::PstreeEntry& entry = hdr.pstree.front();
    const pid_t pid = entry.pid();
    if (entry.zombie())
        return failf(ENOTSUP, "pid {}: the dumped process is a zombie; there is nothing to run", pid);
    HostInfo host = TRY(probe_host());
    if (!hdr.inventory.kernel_release().empty() && hdr.inventory.kernel_release() != host.kernel_release)
        log.warn("restore", "dumped on kernel {}, restoring on {}: the vDSO layouts match, but its code may "
                            "differ", hdr.inventory.kernel_release(), host.kernel_release);

    // Phase 1: everything read and checked, every object the blob needs opened.
    Prepared pr = TRY(prepare_process(dir, hdr.inventory, entry, host, log));
    FilesRestorer files = TRY(FilesRestorer::load(dir.fd(), {pid}, log));
    std::optional<SysvIpcRestorer> ipc = TRY(SysvIpcRestorer::load(dir.fd(), log));
    std::set<int> sysv_attached = TRY(check_sysv_vmas(pr.p.mm, ipc, pid));
    std::set<int> sysv_removed;
    if (ipc)
        for (const auto& s : ipc->image().shms())
            if (s.destroyed())
                sysv_removed.insert(s.perm().id());
    // The pid first: when a whole restored copy still runs, that is what the user should read.
    const auto t_wait = Clock::now();
    TRY_VOID(wait_pid_free(pid, "pid", log));
    for (int i = 1; i < entry.threads_size(); i++)
        TRY_VOID(wait_pid_free(entry.threads(i), "tid", log));
    const uint64_t t_wait_us = us_since(t_wait);

    int report_pipe[2], go_pipe[2];
    if (::pipe2(report_pipe, O_CLOEXEC) < 0 || ::pipe2(go_pipe, O_CLOEXEC) < 0)
        return fail_errno("creating the restorer's pipes");
    UniqueFd report_r(report_pipe[0]), report_w(report_pipe[1]), go_r(go_pipe[0]), go_w(go_pipe[1]);

    BlobFdSlots slots;
    slots.report_fd = report_w.get();
    slots.go_fd = go_r.get();
    slots.page_sources = pr.pages.sources;
    for (const auto& fd : pr.files.fds)
        slots.vma_objects.push_back(fd.get());
    std::span<const uint8_t> code = restorer_blob_code();
    BlobArgsInput in{&pr.p, &host, &pr.pages, &pr.files, &slots, code.size(), true};
    in.sysv_removed = &sysv_removed;
    BlobArgs args = TRY(BlobArgs::build(in));
    auto own = TRY(parse_maps_ranges(TRY(read_self_maps())));
    uint64_t base = TRY_CTX(find_blob_hole(pr.p.mm, own, args.area_size()), "pid {}", pid);
    args.place(base);
    log.info("restore", "pid {}: restorer area {:#x}-{:#x} ({} KiB, args {} bytes)", pid, base,
             base + args.area_size(), args.area_size() / 1024, args.bytes().size());
    const uint64_t t_prepare_us = us_since(t_start) - t_wait_us;

    // Phase 2: the process, with its pid.
    ChildPlan plan;
    plan.opts = &opts;
    plan.p = &pr.p;
    plan.args = &args;
    plan.code = code;
    plan.slot_fds = slots.all();
    plan.files = &files;
    plan.ipc = ipc ? &*ipc : nullptr;
    plan.sysv_attached = &sysv_attached;
    plan.criu_pid = ::getpid();
    const auto t_fork = Clock::now();
    UniqueFd pidfd;
    pid_t child = TRY(fork_with_pid(pid, pidfd, log));
    if (child == 0)
        run_restored_child(plan, log);
    const uint64_t t_fork_us = us_since(t_fork);  // includes waiting for a dying holder of the pid
    report_w.reset();
    go_r.reset();
    RestoredProcess proc(pid, std::move(pidfd), pr.p, args, std::move(report_r), std::move(go_w), log);
    log.debug("restore", "pid {}: forked, waiting for the restorer", pid);

    // Phase 3 runs in the process; it reports ready once every thread is prepared.
    TRY_VOID(proc.wait_ready());
    const uint64_t t_ready_us = us_since(t_fork) - t_fork_us;
    // Phase 4: let the threads go and remove the blob area behind them.
    bool area_removed = TRY(proc.release());
    if (!opts.pidfile.empty())
        TRY_VOID(write_pidfile(opts.pidfile, pid));
    proc.disarm();

    images::RestoreStats stats;
    stats.set_total_time_us(us_since(t_start));
    stats.set_forking_time_us(t_wait_us + t_fork_us);
    stats.set_restore_time_us(us_since(t_fork) - t_fork_us);
    stats.set_pages_restored(pr.pages.pages_from_images);
    stats.set_tasks(1);
    write_stats(dir, opts, stats, log);
    log.info("restore", "pid {} restored with {} threads in {} us (images and planning {} us, waiting for the "
                        "pid {} us, fork {} us, restorer until ready {} us, release {} us){}", pid, entry.threads_size(),
             stats.total_time_us(), t_prepare_us, t_wait_us, t_fork_us, t_ready_us,
             stats.restore_time_us() - t_ready_us, area_removed ? "" : "; restorer area left mapped");

    if (opts.restore_detached)
        return 0;  // criu exits; the process is reparented to the nearest subreaper or init
    return wait_for_exit(pid, log);
}

}  // namespace criu
