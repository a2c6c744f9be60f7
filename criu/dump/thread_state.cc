#include "criu/dump/thread_state.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "criu/core/proc_parse.h"
#include "criu/core/syscall_restart.h"

namespace criu {

namespace {

// struct rseq_cs (linux/rseq.h): where a critical section starts, how long it is, where it aborts.
struct RseqCs {
    uint32_t version;
    uint32_t flags;
    uint64_t start_ip;
    uint64_t post_commit_offset;
    uint64_t abort_ip;
};
constexpr uint64_t kRseqCsOffset = 8;  // struct rseq { u32 cpu_id_start; u32 cpu_id; u64 rseq_cs; ... }

// A thread stopped inside an rseq critical section must resume at its abort handler: the
// kernel would have sent it there on preemption, and the restored thread's cpu may differ.
Status fixup_rseq_cs(Task& task, const RseqConfig& rseq, user_regs_struct& regs, Log& log) {
    if (!rseq.ptr)
        return {};
    uint64_t cs_ptr = TRY_CTX(task.read_val(remote_ptr<uint64_t>(rseq.ptr + kRseqCsOffset)),
                              "tid {}: reading rseq->rseq_cs", task.tid());
    if (!cs_ptr)
        return {};
    RseqCs cs = TRY_CTX(task.read_val(remote_ptr<RseqCs>(cs_ptr)), "tid {}: reading struct rseq_cs", task.tid());
    if (regs.rip >= cs.start_ip && regs.rip - cs.start_ip < cs.post_commit_offset) {
        log.info("dump", "tid {}: stopped inside an rseq critical section; resuming at abort_ip {:#x}", task.tid(),
                 cs.abort_ip);
        regs.rip = cs.abort_ip;
    }
    return {};
}

}  // namespace

Status dump_thread_ptrace_state(Task& task, images::ThreadCore& out, Log& log) {
    pid_t tid = task.tid();
    out.set_tid(tid);

    const user_regs_struct& raw = task.initial_regs();
    out.set_orig_rax(static_cast<int64_t>(raw.orig_rax));
    out.set_raw_rax(static_cast<int64_t>(raw.rax));
    user_regs_struct regs = restart_fixup(raw, RestartMode::Image);

    RseqConfig rseq = TRY(task.rseq_config());
    if (rseq.ptr) {
        auto* r = out.mutable_rseq();
        r->set_ptr(rseq.ptr);
        r->set_len(rseq.len);
        r->set_signature(rseq.signature);
        TRY_VOID(fixup_rseq_cs(task, rseq, regs, log));
    }
    out.set_gpregs(std::string(reinterpret_cast<const char*>(&regs), sizeof(regs)));

    std::vector<uint8_t> xs = TRY(task.xstate());
    out.set_xsave(std::string(reinterpret_cast<const char*>(xs.data()), xs.size()));
    out.set_sigmask(TRY(task.signal_mask()));

    for (const siginfo_t& si : TRY(task.peek_siginfo(false)))
        out.add_pending()->set_siginfo(std::string(reinterpret_cast<const char*>(&si), sizeof(si)));

    // get_robust_list works on another thread given ptrace access (KERNEL-NOTES section 2).
    uint64_t head = 0;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, tid, &head, &len) < 0)
        return fail_errno("tid {} of pid {}: get_robust_list", tid, task.pid());
    out.set_robust_list(head);
    out.set_robust_list_len(len);

    int policy = sched_getscheduler(tid);
    if (policy < 0)
        return fail_errno("tid {} of pid {}: sched_getscheduler", tid, task.pid());
    out.set_sched_reset_on_fork((policy & SCHED_RESET_ON_FORK) != 0);
    out.set_sched_policy(policy & ~SCHED_RESET_ON_FORK);
    sched_param sp{};
    if (sched_getparam(tid, &sp) < 0)
        return fail_errno("tid {} of pid {}: sched_getparam", tid, task.pid());
    out.set_sched_priority(sp.sched_priority);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, tid);
    if (nice == -1 && errno != 0)
        return fail_errno("tid {} of pid {}: getpriority", tid, task.pid());
    out.set_nice(nice);

    std::string comm = TRY(read_proc_file(fmt::format("/proc/{}/task/{}/comm", task.pid(), tid)));
    if (!comm.empty() && comm.back() == '\n')
        comm.pop_back();
    out.set_comm(comm);
    return {};
}

Status dump_thread_remote_state(RemoteSyscalls& rs, images::ThreadCore& out) {
    // stack_t: void *ss_sp; int ss_flags; size_t ss_size.
    struct {
        uint64_t sp;
        int32_t flags;
        int32_t pad;
        uint64_t size;
    } ss{};
    TRY(rs.syscall_checked("sigaltstack", SYS_sigaltstack, 0, rs.scratch().addr()));
    TRY_VOID(rs.read_scratch(0, &ss, sizeof(ss)));
    auto* alt = out.mutable_altstack();
    alt->set_sp(ss.sp);
    alt->set_flags(ss.flags);
    alt->set_size(ss.size);

    // glibc sets clear_child_tid for every thread, the main one too; without it pthread_join
    // hangs after restore (KERNEL-NOTES pitfall 10).
    uint64_t ctid = 0;
    TRY(rs.syscall_checked("prctl(PR_GET_TID_ADDRESS)", SYS_prctl, PR_GET_TID_ADDRESS, rs.scratch().addr()));
    TRY_VOID(rs.read_scratch(0, &ctid, sizeof(ctid)));
    out.set_clear_child_tid(ctid);
    return {};
}

}  // namespace criu
