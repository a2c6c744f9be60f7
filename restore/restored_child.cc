#include "restore/restored_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "criu/ipc/sysv_semadj.h"

namespace criu {

void report_child_failure(int report_fd, const Error& e) {
    blob_report r{};
    r.magic = BLOB_REPORT_MAGIC;
    r.step = BLOB_STEP_CHILD_SETUP;
    r.err = e.err();
    r.tid = int32_t(::getpid());
    std::string msg = e.str();
    std::memcpy(r.msg, msg.data(), std::min(msg.size(), sizeof(r.msg) - 1));
    ssize_t n = ::write(report_fd, &r, sizeof(r));
    (void)n;  // criu sees EOF and the exit status if even this fails
    ::_exit(BLOB_FAIL_EXIT_CODE);
}

namespace {

// Sessions and groups (KERNEL-NOTES section 5): a session leader starts its own session, a
// group leader its own group. Others stay in criu's session and group: their leaders are not
// part of the restore (process trees will place members into restored leaders' groups).
Status set_session_and_group(const images::PstreeEntry& e, Log& log) {
    pid_t pid = e.pid();
    if (e.sid() == pid) {
        if (::setsid() < 0)
            return fail_errno("pid {}: setsid", pid);
    } else if (e.pgid() == pid) {
        if (::setpgid(0, 0) < 0)
            return fail_errno("pid {}: setpgid to its own group", pid);
    }
    if (e.sid() != pid && e.sid() != ::getsid(0))
        log.info("restore", "pid {}: session {} is not restored (its leader is outside the dump); the process "
                            "joins session {}", pid, e.sid(), ::getsid(0));
    return {};
}

// Closes every fd above `max_target` except the service fds: nothing of criu (log file,
// image directory, terminal copies) may leak into the restored process.
Status close_leftovers(int max_target, std::vector<int> keep) {
    std::sort(keep.begin(), keep.end());
    unsigned next = unsigned(max_target + 1);
    for (int k : keep) {
        if (unsigned(k) > next && ::syscall(SYS_close_range, next, unsigned(k) - 1, 0) != 0)
            return fail_errno("close_range {}-{}", next, k - 1);
        next = std::max(next, unsigned(k) + 1);
    }
    if (::syscall(SYS_close_range, next, ~0u, 0) != 0)
        return fail_errno("close_range {}-", next);
    return {};
}

// `fs_shared`: cwd, root and umask belong to the parent's fs too, and the topmost process
// sharing them sets them for all (a second chroot would resolve inside the first).
Status set_fs_and_limits(const RestoredProcessImages& p, bool fs_shared) {
    const pid_t pid = p.entry.pid();
    if (p.fs && !fs_shared) {
        if (p.fs->root() != "/" && ::chroot(p.fs->root().c_str()) < 0)
            return fail_errno("pid {}: chroot {}", pid, p.fs->root());
        // cwd is as the process saw it, i.e. inside its root.
        if (::chdir(p.fs->cwd().c_str()) < 0)
            return fail_errno("pid {}: chdir {}", pid, p.fs->cwd());
    }
    if (!fs_shared)
        ::umask(mode_t(p.core.umask()));
    if (::personality(p.core.personality()) < 0)
        return fail_errno("pid {}: personality {:#x}", pid, p.core.personality());
    if (p.core.child_subreaper() && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return fail_errno("pid {}: PR_SET_CHILD_SUBREAPER", pid);
    return {};
}

// Last before the jump: a lowered RLIMIT_AS or RLIMIT_DATA must not stop the blob area's mmap.
Status set_rlimits(const RestoredProcessImages& p) {
    for (const auto& r : p.core.rlimits()) {
        struct rlimit64 lim{r.cur(), r.max()};
        if (::prlimit64(0, static_cast<__rlimit_resource>(r.resource()), &lim, nullptr) < 0)
            return fail_errno("pid {}: rlimit {} to {}/{}", p.entry.pid(), r.resource(), r.cur(), r.max());
    }
    return {};
}

// Maps the area, copies code and args, patches what only this process knows.
Status install_blob(const ChildPlan& plan, const std::vector<int>& fds) {
    BlobArgs& args = *plan.args;
    const BlobLayout& l = args.layout();
    void* at = ::mmap(reinterpret_cast<void*>(l.base), l.size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (at == MAP_FAILED)
        return fail_errno("mapping the restorer area at {:#x} ({} bytes)", l.base, l.size);
    if (reinterpret_cast<uint64_t>(at) != l.base)  // pre-4.17 kernels ignore NOREPLACE; not ours
        return failf(EEXIST, "the restorer area landed at {} instead of {:#x}", at, l.base);
    std::memcpy(at, plan.code.data(), plan.code.size());
    auto* dst = reinterpret_cast<uint8_t*>(l.args_addr());
    std::memcpy(dst, args.bytes().data(), args.bytes().size());
    auto* table = reinterpret_cast<int32_t*>(dst + args.fds_off());
    for (size_t i = 0; i < fds.size(); i++)
        table[i] = fds[i];
    // glibc registered rseq for this thread with the kernel's length 32 (KERNEL-NOTES pitfall 7).
    auto* a = reinterpret_cast<blob_args*>(dst);
    if (__rseq_size > 0) {
        a->own_rseq_ptr = reinterpret_cast<uint64_t>(__builtin_thread_pointer()) + uint64_t(__rseq_offset);
        a->own_rseq_len = 32;
        a->own_rseq_sig = RSEQ_SIG;
    }
    if (::mprotect(at, l.code_size, PROT_READ | PROT_EXEC) < 0)
        return fail_errno("mprotect of the restorer code");
    return {};
}

[[noreturn]] void jump_to_blob(uint64_t entry, uint64_t args, uint64_t stack_top) {
    // The restorer's stack is about to be unmapped: switch to the blob's before calling in.
    asm volatile(
        "mov %0, %%rsp\n\t"
        "xor %%ebp, %%ebp\n\t"
        "call *%1\n\t"
        "ud2"
        :
        : "r"(stack_top), "r"(entry), "D"(args)
        : "memory");
    __builtin_unreachable();
}

Status prepare(const ChildPlan& plan, Log& log, int& report_fd) {
    const RestoredProcessImages& p = *plan.p;
    // Before any fd moves: the segment contents are read from fds criu opened. In a tree only
    // the root makes the namespace; its children are born in it.
    if (plan.ipc)
        TRY_VOID(plan.ipc->restore_in_child(*plan.sysv_attached));
    if (plan.tree)
        TRY_VOID(fork_tree_part(*plan.tree, plan.tree_index, report_fd, log));
    else
        TRY_VOID(set_session_and_group(p.entry, log));
    // Once the semaphore sets exist, and after forking (a child starts without an undo list).
    TRY_VOID(restore_semadj(p.core));
    const bool fs_shared = p.entry.shares_fs_with_parent();
    if (fs_shared && p.fs && p.fs->root() != "/")
        return failf(ENOTSUP, "pid {} shares cwd and root with its parent, and its root is {}: not supported (the "
                              "chroot of the process that sets them would race with this one's path lookups)",
                     p.entry.pid(), p.fs->root());
    const ProcessForkPlan* fp = plan.tree ? &plan.tree->plan->procs.at(plan.tree_index) : nullptr;
    std::vector<int> fds;
    if (fp && fp->files_owner != plan.tree_index) {
        // Another process of the tree installs this fd table (fd_table_share.h).
        fds = TRY(plan.tree->fd_tables->user_wait(plan.tree_index, fp->files_owner, plan.slot_fds.size()));
        report_fd = fds.at(BLOB_FD_REPORT);
    } else {
        // This table's users (if any) have forked all they fork: nobody else works in it now.
        std::vector<const std::vector<int>*> lists{&plan.slot_fds};
        if (fp && !fp->files_users.empty()) {
            TRY_VOID(plan.tree->fd_tables->owner_wait_ready(plan.tree_index, fp->files_users.size()));
            for (size_t u : fp->files_users)
                lists.push_back(&plan.tree->children.at(u)->slot_fds);
        }
        int max_target = plan.files ? plan.files->max_target_fd(p.entry.pid()) : 2;
        auto moved = TRY(move_service_fds(lists, std::max(max_target + 1, 3), report_fd));
        // From here on criu's log file descriptor may be reused by a restored fd: this process
        // logs nothing more; errors travel on the report pipe.
        Log quiet(0);
        if (plan.files)
            TRY_VOID(plan.files->restore_process_fds(p.entry.pid(), *plan.opts, quiet));
        std::vector<int> keep;
        for (const auto& m : moved)
            keep.insert(keep.end(), m.begin(), m.end());
        TRY_VOID(close_leftovers(max_target, keep));
        if (fp && !fp->files_users.empty()) {
            for (size_t k = 0; k < fp->files_users.size(); ++k)
                plan.tree->fd_tables->owner_publish(fp->files_users[k], moved[k + 1]);
            plan.tree->fd_tables->owner_go(plan.tree_index);
        }
        fds = std::move(moved[0]);
    }
    TRY_VOID(set_fs_and_limits(p, fs_shared));
    TRY_VOID(install_blob(plan, fds));
    TRY_VOID(set_rlimits(p));
    return {};
}

}  // namespace

void run_restored_child(const ChildPlan& plan, Log& log) {
    int report_fd = plan.slot_fds.at(BLOB_FD_REPORT);
    // Until the blob reports done, criu's death must take this half-built process with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != plan.criu_pid)
        ::_exit(BLOB_FAIL_EXIT_CODE);
    // criu's handlers must never run here; the blob installs the dumped ones.
    sigset_t all;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);

    auto st = prepare(plan, log, report_fd);
    if (!st)
        report_child_failure(report_fd, st.error().add_context(fmt::format("pid {}", plan.p->entry.pid())));
    const BlobLayout& l = plan.args->layout();
    jump_to_blob(l.base, l.args_addr(), l.main_stack_top);
}

}  // namespace criu
