// The dumper's entry point: the process tree below -t ROOT, any number of threads per process.
// The per-process part, dump_process(), is what the tree dump repeats for each live member.
//
// Images written (all into opts.images_dir, inventory.img last so that a dump that failed half
// way never looks like a valid image set):
//   core-<pid>.img    TaskCore: threads[0] is the main thread, same order as pstree threads;
//                     gpregs = raw user_regs_struct after the syscall-restart fix-up, xsave = raw
//                     NT_X86_XSTATE buffer
//   mm-<pid>.img      MmInfo: every VMA (PROT_*, MAP_*, absolute paths), [vsyscall] recorded
//                     but never to be restored, vDSO/vvar with their addresses
//   pagemap-<pid>.img / pages-<pid>.img: private anon pages, COWed private file pages and
//                     shared anon pages, in address order; an anon page absent from the pagemap
//                     is zero, a file page absent comes from the file
//   fs-<pid>.img      FsInfo (cwd, root)
//   fdinfo-<pid>.img, files.img, pipes-data.img: written by criu/files (FilesDumper)
//   pstree.img        every member (zombies too), parents before children
//   stats-dump.img, inventory.img
// Shared anonymous memory (and memfd mappings) shared by several processes has its pages in
// the images of the first process (in pstree order) that maps it; the others' pagemaps leave
// it out and the restore maps the one object they all share.
#pragma once

#include <sys/types.h>

#include <set>
#include <utility>
#include <functional>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "criu/core/options.h"
#include "criu/core/seized_process.h"
#include "criu/dump/dump_context.h"
#include "criu/dump/vma_list.h"
#include "criu/files/fd_kinds.h"
#include "criu/dump/core_image.h"
#include "proto/files.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"
#include "proto/stats.pb.h"

namespace criu {

class PageHashes;
class IncrementalDump;
struct LiveTracking;

// `criu dump -t PID`: pre-flight of the whole tree (nothing frozen), seize every thread of
// every process below PID, collect, write images, then kill the tree (default) or resume it
// exactly as it was (--leave-running). With --dry-run only the pre-flight runs and nothing is
// written. On any error, SIGINT or SIGTERM every process is resumed as it was, nothing is left
// in any of them, and no inventory.img exists.
// With `live` (dump --pre-copy, pre_copy.h): the parent is the last pre-copy round and the
// dirty set comes from that tracker.
Status run_dump(const Options& opts, Log& log, LiveTracking* live = nullptr);

// What live migration changes in a dump: where the pages go, and a last step with the image
// set complete and the process still frozen. An error there fails the dump, which resumes
// the process as it was; success lets the dump kill it (or resume it with --leave-running).
struct DumpHooks {
    PageSinkFactory page_sinks;  // empty: the image directory (or --page-server)
    std::function<void()> on_frozen;  // right after every thread is stopped
    std::function<Status()> before_release;
    // Right after SIGKILL reached every process of the tree (they never run again), before
    // their exits are collected (tearing 1 GiB down takes ~0.2 s): migration commits here.
    std::function<void()> on_killed;
    LiveTracking* live_tracking = nullptr;  // see run_dump above
    // false: no pagehash-<pid>.bin (the fallback for a lost tracker). A migration streams its
    // rounds and would rather copy everything again in that case than hash every page it sends.
    bool page_hashes = true;
    // Where the finished operation's stats go as well (frozen_time_us, pages_dirty,
    // pages_written, dirty_tracking, ...): a migration reports its rounds from them.
    images::DumpStats* stats_out = nullptr;
};
Status run_dump(const Options& opts, Log& log, const DumpHooks& hooks);

// `criu pre-dump -t PID`: memory only (mm-<pid>.img with the VMAs, pagemap/pages, pstree,
// inventory with pre_dump set, pagehash-<pid>.bin), and the process always runs on. With
// --prev-images-dir, both commands record pages whose content hash equals the previous image
// set's as PE_PARENT (this kernel has no soft-dirty; see page_hashes.h) and set
// Inventory.parent_dir. `dump -R --track-mem` also writes pagehash-<pid>.bin.
Status run_pre_dump(const Options& opts, Log& log);
// The same with the hooks of DumpHooks. The process is stopped only to start a new dirty
// tracker or to read soft-dirty bits (on_frozen runs then), never when the parent's tracking
// agent answers; its pages are copied while it runs, and before_release runs once the image
// set is complete (the process runs already).
Status run_pre_dump(const Options& opts, Log& log, const DumpHooks& hooks);

// Everything learned about one process, before it is written.
struct ProcessImages {
    images::TaskCore core;
    images::MmInfo mm;
    images::FsInfo fs;
    images::PstreeEntry pstree;
    std::vector<DumpVma> vmas;
    const PageHashes* parent_hashes = nullptr;  // page hashes of the previous image set, if any
    PageHashes* hashes = nullptr;               // where to record this dump's page hashes, if wanted
    // (dev, ino) of shared memory objects whose pages an earlier process of the tree already
    // dumped; this process's own are added. Null: dump every shared page.
    std::set<std::pair<uint64_t, uint64_t>>* shared_dumped = nullptr;
    IncrementalDump* incremental = nullptr;     // parent set and dirty tracking (incremental.h), if any
    // The memory map read while the process still ran (the pre-flight of an incremental
    // dump): reused if /proc/PID/maps still shows it line for line (collect_vmas_reusing).
    const std::vector<DumpVma>* vmas_hint = nullptr;
};

// Dumps one seized process: thread and process state, memory map and pages, fds. Writes
// pages-/pagemap-/fdinfo- images as it goes; the rest is left in `out` for write_process_images.
Status dump_process(DumpContext& ctx, SeizedProcess& sp, FilesDumper& files, ProcessImages& out);

// dump_process in three parts, in this order (a tree dump writes one process's pages on another
// thread while it reads the next process's state): thread and process state and the memory
// map (ptrace: the seizing thread only); the pages (any thread); fds and fs.
Status dump_process_state(DumpContext& ctx, SeizedProcess& sp, ProcessImages& out);
Status dump_process_pages(DumpContext& ctx, SeizedProcess& sp, ProcessImages& out);
Status dump_process_files(DumpContext& ctx, SeizedProcess& sp, FilesDumper& files, ProcessImages& out);

// Writes core-, mm- and fs-<pid>.img.
Status write_process_images(DumpContext& ctx, const ProcessImages& img);

// Every blocker of dumping `pid` found without stopping it (process state, fds, memory map),
// as one error listing them all. With `vmas`, the memory map it read is kept there.
Status preflight(pid_t pid, const Options& opts, Log& log, std::vector<DumpVma>* vmas = nullptr);
// The same for every live process of the tree below `root`, plus what the processes share
// that cannot be restored (tree_sharing_problems), as one error listing every blocker. With
// `root_vmas`, the root's memory map is kept there.
Status preflight_tree(pid_t root, const Options& opts, Log& log, std::vector<DumpVma>* root_vmas = nullptr);

}  // namespace criu
