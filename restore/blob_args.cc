#include "restore/blob_args.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>

#include <cstring>

#include "criu/core/assert.h"
#include "restore/sigframe.h"

namespace criu {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kSchedResetOnFork = 0x40000000;
constexpr uint64_t kCapSysAdmin = 1ull << 21;

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool is_vdso_kind(images::VmaKind k) {
    return k == images::VMA_VDSO || k == images::VMA_VVAR || k == images::VMA_VVAR_VCLOCK;
}

uint32_t map_flags_for(const images::Vma& v) {
    // Only the flags that shape the mapping are taken from the dump; MAP_DENYWRITE and
    // MAP_EXECUTABLE are ignored by mmap since 5.x.
    uint32_t keep = v.flags() & (MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE);
    if (vma_mapped_anonymously(v))
        return MAP_PRIVATE | MAP_ANONYMOUS | keep;
    switch (v.kind()) {
    case images::VMA_FILE_PRIVATE:
        return MAP_PRIVATE | keep;
    case images::VMA_FILE_SHARED:
    case images::VMA_ANON_SHARED:
    case images::VMA_MEMFD_SHARED:
        return MAP_SHARED | keep;
    default:
        return MAP_PRIVATE | MAP_ANONYMOUS | keep;
    }
}

blob_itimer to_itimer(const images::ItimerValue& v) {
    return {int64_t(v.interval_sec()), int64_t(v.interval_usec()), int64_t(v.value_sec()),
            int64_t(v.value_usec())};
}

}  // namespace

std::vector<int> BlobFdSlots::all() const {
    std::vector<int> v{report_fd, go_fd};
    v.insert(v.end(), page_sources.begin(), page_sources.end());
    v.insert(v.end(), vma_objects.begin(), vma_objects.end());
    return v;
}

size_t BlobArgs::reserve(size_t bytes, size_t align) {
    size_t off = round_up(buf_.size(), align);
    buf_.resize(off + bytes, 0);
    return off;
}

Expected<BlobArgs> BlobArgs::build(const BlobArgsInput& in) {
    const RestoredProcessImages& p = *in.p;
    const HostInfo& host = *in.host;
    const images::TaskCore& core = p.core;
    const images::MmInfo& mm = p.mm;
    BlobArgs b;
    b.p_ = in.p;
    b.xcr0_ = host.xcr0;
    b.reserve(sizeof(blob_args), 64);
    {
        blob_args* a = b.args();
        a->magic = BLOB_ARGS_MAGIC;
        a->pid = p.entry.pid();
        a->nr_threads = uint32_t(core.threads_size());
    }

    // Service fd table: numbers are patched in by the restored child.
    std::vector<int> slots = in.slots->all();
    b.nr_fds_ = uint32_t(slots.size());
    b.fds_off_ = uint32_t(b.reserve(slots.size() * sizeof(int32_t), 8));
    for (size_t i = 0; i < slots.size(); i++)
        b.at<int32_t>(b.fds_off_)[i] = -1;
    b.args()->fds_off = b.fds_off_;
    b.args()->nr_fds = b.nr_fds_;

    // VMAs (the vDSO block is moved, never mapped; [vsyscall] is the kernel's).
    std::vector<blob_vma> vmas;
    uint64_t vdso_block = 0;
    bool vdso_in_target = false;
    for (int i = 0; i < mm.vmas_size(); i++) {
        const auto& v = mm.vmas(i);
        if (v.kind() == images::VMA_VSYSCALL)
            continue;
        if (is_vdso_kind(v.kind())) {
            if (!vdso_in_target)
                vdso_block = v.start();
            vdso_in_target = true;
            continue;
        }
        blob_vma bv{};
        bv.start = v.start();
        bv.end = v.end();
        bv.pgoff = vma_mapped_anonymously(v) ? 0 : v.pgoff();
        bv.prot = v.prot();
        bv.map_prot = v.prot() | (in.pages->vma_filled[size_t(i)] ? PROT_WRITE : 0);
        bv.map_flags = map_flags_for(v);
        int obj = in.files->vma_fd[size_t(i)];
        bv.fd_slot = obj < 0 ? -1 : in.slots->first_vma_slot() + obj;
        bv.madv = v.madvise();
        if (v.kind() == images::VMA_SYSV_SHM) {
            // Attached by the blob with shmat(); the segment exists already (sysv_ipc.h).
            bv.pgoff = v.shmid();
            bv.fd_slot = -1;
            bv.map_flags = MAP_SHARED;
            bv.map_prot = v.prot();
            bv.sysv = BLOB_SYSV_SHM | (v.sysv_may_write() ? 0 : BLOB_SYSV_RDONLY) |
                      (in.sysv_removed && in.sysv_removed->contains(int(v.shmid())) ? BLOB_SYSV_RMID : 0);
        }
        vmas.push_back(bv);
    }
    size_t off = b.reserve(vmas.size() * sizeof(blob_vma), 8);
    std::memcpy(b.buf_.data() + off, vmas.data(), vmas.size() * sizeof(blob_vma));
    b.args()->vmas_off = uint32_t(off);
    b.args()->nr_vmas = uint32_t(vmas.size());

    // Page runs.
    const auto& runs = in.pages->runs;
    off = b.reserve(runs.size() * sizeof(blob_page_run), 8);
    for (size_t i = 0; i < runs.size(); i++) {
        blob_page_run r{};
        r.vaddr = runs[i].vaddr;
        r.nr_pages = runs[i].nr_pages;
        r.file_off = runs[i].offset;
        r.fd_slot = runs[i].source < 0 ? -1 : in.slots->first_page_slot() + runs[i].source;
        r.direct_slot = runs[i].direct_source < 0 ? -1 : in.slots->first_page_slot() + runs[i].direct_source;
        std::memcpy(b.buf_.data() + off + i * sizeof(r), &r, sizeof(r));
    }
    b.args()->runs_off = uint32_t(off);
    b.args()->nr_runs = uint32_t(runs.size());

    off = b.reserve(size_t(mm.guards_size()) * sizeof(blob_range), 8);
    for (int i = 0; i < mm.guards_size(); i++) {
        blob_range g{mm.guards(i).start(), mm.guards(i).end()};
        std::memcpy(b.buf_.data() + off + size_t(i) * sizeof(g), &g, sizeof(g));
    }
    b.args()->guards_off = uint32_t(off);
    b.args()->nr_guards = uint32_t(mm.guards_size());

    const auto& lazy = in.pages->lazy_ranges;
    off = b.reserve(lazy.size() * sizeof(blob_range), 8);
    for (size_t i = 0; i < lazy.size(); i++) {
        blob_range l{lazy[i].first, lazy[i].second};
        std::memcpy(b.buf_.data() + off + i * sizeof(l), &l, sizeof(l));
    }
    b.args()->lazy_off = uint32_t(off);
    b.args()->nr_lazy = uint32_t(lazy.size());

    // vDSO: where ours is now (the child inherits criu's), and where the process expects it.
    {
        blob_args* a = b.args();
        CRIU_ASSERT(host.vdso.size() <= BLOB_MAX_VDSO_PARTS);
        a->nr_vdso_parts = uint32_t(host.vdso.size());
        for (size_t i = 0; i < host.vdso.size(); i++)
            a->vdso_parts[i] = {host.vdso[i].start, host.vdso[i].size, host.vdso[i].offset};
        a->vdso_in_target = vdso_in_target;
        a->vdso_target = vdso_block;
    }

    // mm: the auxv array travels in the args.
    off = b.reserve(size_t(mm.auxv_size()) * 8, 8);
    for (int i = 0; i < mm.auxv_size(); i++)
        b.at<uint64_t>(off)[i] = mm.auxv(i);
    {
        blob_mm& m = b.args()->mm;
        m = {mm.start_code(), mm.end_code(), mm.start_data(), mm.end_data(), mm.start_brk(), mm.brk(),
             mm.start_stack(), mm.arg_start(), mm.arg_end(), mm.env_start(), mm.env_end(),
             uint32_t(off), uint32_t(mm.auxv_size() * 8),
             in.files->exe < 0 ? -1 : in.slots->first_vma_slot() + in.files->exe, 0};
    }

    // Signal handlers: every catchable signal, SIG_DFL where the dump has no record, so none
    // of criu's own dispositions survives into the process.
    {
        blob_args* a = b.args();
        for (int s = 1; s <= 64; s++)
            if (s != SIGKILL && s != SIGSTOP)
                a->sigaction_valid |= 1ull << (s - 1);
        for (const auto& sa : core.sigactions())
            a->sigactions[sa.signo() - 1] = {sa.handler(), sa.flags(), sa.restorer(), sa.mask()};
        const std::pair<bool, const images::ItimerValue*> its[3] = {
            {core.has_itimer_real(), &core.itimer_real()},
            {core.has_itimer_virtual(), &core.itimer_virtual()},
            {core.has_itimer_prof(), &core.itimer_prof()}};  // ITIMER_REAL, _VIRTUAL, _PROF
        for (int w = 0; w < 3; w++) {
            if (!its[w].first)
                continue;
            a->itimer_valid |= 1u << w;
            a->itimers[w] = to_itimer(*its[w].second);
        }
        a->dumpable = core.dumpable() ? 1 : 0;
        // A parent-death signal relative to a parent outside the dump would fire when criu
        // exits (restore -d): only a parent inside the restored tree keeps it.
        a->pdeath_signal = in.is_tree_root ? 0 : core.pdeath_signal();
        a->no_new_privs = core.no_new_privs();
        a->timerslack_ns = core.timerslack_ns();
    }

    off = b.reserve(size_t(core.posix_timers_size()) * sizeof(blob_posix_timer), 8);
    for (int i = 0; i < core.posix_timers_size(); i++) {
        const auto& t = core.posix_timers(i);
        blob_posix_timer bt{t.id(), t.clock_id(), t.sigev_notify(), t.signo(), t.sigval(),
                            t.notify_tid(), 0, t.value_ns(), t.interval_ns()};
        std::memcpy(b.buf_.data() + off + size_t(i) * sizeof(bt), &bt, sizeof(bt));
    }
    b.args()->timers_off = uint32_t(off);
    b.args()->nr_timers = uint32_t(core.posix_timers_size());

    off = b.reserve(size_t(core.shared_pending_size()) * 128, 8);
    for (int i = 0; i < core.shared_pending_size(); i++)
        std::memcpy(b.buf_.data() + off + size_t(i) * 128, core.shared_pending(i).siginfo().data(), 128);
    b.args()->shared_pending_off = uint32_t(off);
    b.args()->nr_shared_pending = uint32_t(core.shared_pending_size());

    // Seccomp: instructions first, then the table that points at them.
    std::vector<blob_seccomp_filter> filters;
    for (const auto& f : core.seccomp()) {
        size_t io = b.reserve(f.bpf().size(), 8);
        std::memcpy(b.buf_.data() + io, f.bpf().data(), f.bpf().size());
        // TSYNC is dropped: each thread installs the same filters itself.
        filters.push_back({f.flags() & ~1u, uint32_t(f.bpf().size() / 8), io});
    }
    off = b.reserve(filters.size() * sizeof(blob_seccomp_filter), 8);
    std::memcpy(b.buf_.data() + off, filters.data(), filters.size() * sizeof(blob_seccomp_filter));
    b.args()->seccomp_off = uint32_t(off);
    b.args()->nr_seccomp = uint32_t(filters.size());

    // Credentials, when the dump has them.
    if (core.has_creds()) {
        const auto& c = core.creds();
        off = b.reserve(size_t(c.groups_size()) * 4, 8);
        for (int i = 0; i < c.groups_size(); i++)
            b.at<uint32_t>(off)[i] = c.groups(i);
        blob_creds& bc = b.args()->creds;
        bc = {c.uid(), c.euid(), c.suid(), c.fsuid(), c.gid(), c.egid(), c.sgid(), c.fsgid(),
              uint32_t(c.groups_size()), uint32_t(off), c.cap_inh(), c.cap_prm(), c.cap_eff(), c.cap_bnd(),
              c.cap_amb(), c.securebits(), host.cap_last_cap, 0, 1};
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN (seccomp(2)): if the
        // restored capabilities lack it, the final capset comes after the filters.
        bc.caps_after_seccomp = core.seccomp_size() > 0 && !core.no_new_privs() && !(c.cap_eff() & kCapSysAdmin);
    }

    // Threads: records, their pending signals, and room for each sigframe and fpstate.
    const uint32_t nthreads = uint32_t(core.threads_size());
    size_t threads_off = b.reserve(nthreads * sizeof(blob_thread), 8);
    b.args()->threads_off = uint32_t(threads_off);
    for (uint32_t i = 0; i < nthreads; i++) {
        const auto& t = core.threads(int(i));
        UserRegs regs = TRY_CTX(decode_user_regs(t.gpregs()), "pid {} tid {}", p.entry.pid(), t.tid());
        size_t pend = b.reserve(size_t(t.pending_size()) * 128, 8);
        for (int j = 0; j < t.pending_size(); j++)
            std::memcpy(b.buf_.data() + pend + size_t(j) * 128, t.pending(j).siginfo().data(), 128);
        blob_thread bt{};
        bt.tid = t.tid();
        bt.fs_base = regs[kFsBase];
        bt.gs_base = regs[kGsBase];
        bt.clear_child_tid = t.clear_child_tid();
        bt.robust_list = t.robust_list();
        bt.robust_list_len = t.robust_list_len();
        bt.rseq_ptr = t.rseq().ptr();
        bt.rseq_len = t.rseq().len();
        bt.rseq_sig = t.rseq().signature();
        if (t.has_altstack()) {
            bt.altstack_sp = t.altstack().sp();
            bt.altstack_size = t.altstack().size();
            bt.altstack_flags = t.altstack().flags();
        } else {
            bt.altstack_flags = SS_DISABLE;
        }
        bt.sched_policy = t.sched_policy() | (t.sched_reset_on_fork() ? kSchedResetOnFork : 0);
        bt.sched_priority = t.sched_priority();
        bt.nice = t.nice();
        bt.pending_off = uint32_t(pend);
        bt.nr_pending = uint32_t(t.pending_size());
        const std::string& comm = t.comm().empty() ? core.comm() : t.comm();
        std::memcpy(bt.comm, comm.data(), std::min<size_t>(comm.size(), 15));
        std::memcpy(b.buf_.data() + threads_off + i * sizeof(bt), &bt, sizeof(bt));
        b.frame_offs_.push_back(b.reserve(kSigframeSize, 64));
        b.fpstate_offs_.push_back(b.reserve(t.xsave().size() + 4, 64));
    }

    // Sizes: only now is the args size known. Offsets inside are 32-bit; the caps on threads,
    // VMAs and records keep real images far below this, a hostile one is stopped here.
    if (b.buf_.size() > (1ull << 30))
        return failf(E2BIG, "pid {}: the restorer's arguments would take {} bytes", p.entry.pid(), b.buf_.size());
    b.args()->args_size = b.buf_.size();
    BlobLayout& l = b.layout_;
    l.code_size = round_up(in.code_size, kPage);
    l.args_off = l.code_size;
    l.args_size = round_up(b.buf_.size(), kPage);
    uint64_t main_stack_off = l.args_off + l.args_size;
    b.stacks_off_ = main_stack_off + BLOB_MAIN_STACK_SIZE;
    b.park_off_ = b.stacks_off_ + uint64_t(nthreads - 1) * BLOB_THREAD_STACK_SIZE;
    uint64_t park_size = host.vdso.empty() ? 0 : host.vdso.back().offset + host.vdso.back().size;
    l.size = round_up(b.park_off_ + park_size, kPage);
    return b;
}

void BlobArgs::place(uint64_t base) {
    CRIU_ASSERT(base % kPage == 0);
    BlobLayout& l = layout_;
    l.base = base;
    l.main_stack_top = base + stacks_off_;  // the main stack ends where the thread stacks begin
    l.vdso_park = base + park_off_;
    blob_args* a = args();
    a->area_start = base;
    a->area_end = base + l.size;
    a->vdso_park = l.vdso_park;
    const uint64_t args_addr = l.args_addr();
    const images::TaskCore& core = p_->core;
    auto* threads = at<blob_thread>(a->threads_off);
    for (size_t i = 0; i < frame_offs_.size(); i++) {
        const auto& t = core.threads(int(i));
        blob_thread& bt = threads[i];
        bt.frame = args_addr + frame_offs_[i];
        bt.stack_top = i == 0 ? 0 : base + stacks_off_ + i * BLOB_THREAD_STACK_SIZE;
        SigframeInput in;
        in.regs = *decode_user_regs(t.gpregs());  // checked in build()
        in.xsave = t.xsave();
        in.xcr0 = xcr0_;
        in.blocked = t.sigmask();
        in.altstack_sp = bt.altstack_sp;
        in.altstack_flags = bt.altstack_flags;
        in.altstack_size = bt.altstack_size;
        build_sigframe(in, std::span<uint8_t>(buf_.data() + frame_offs_[i], kSigframeSize),
                       std::span<uint8_t>(buf_.data() + fpstate_offs_[i], t.xsave().size() + 4),
                       args_addr + fpstate_offs_[i]);
    }
}

}  // namespace criu
