#include "restore/validate.h"

#include <signal.h>
#include <sys/mman.h>

#include <cstring>
#include <map>
#include <set>

#include "criu/ipc/sysv_semadj.h"
#include "restore/sigframe.h"

namespace criu {
namespace {

std::string core_file(pid_t pid) { return image_file_name(ImageType::Core, pid); }
std::string mm_file(pid_t pid) { return image_file_name(ImageType::Mm, pid); }

bool page_aligned(uint64_t v) { return v % 4096 == 0; }

uint64_t load64(const std::string& s, size_t off) {
    uint64_t v;
    std::memcpy(&v, s.data() + off, 8);
    return v;
}

bool valid_signo(uint64_t s) { return s >= 1 && s <= 64; }

Status check_siginfo(const images::QueuedSignal& q, const std::string& where) {
    if (q.siginfo().size() != 128)
        return failf(EINVAL, "{}: siginfo is {} bytes, expected 128", where, q.siginfo().size());
    int32_t signo;
    std::memcpy(&signo, q.siginfo().data(), 4);
    if (!valid_signo(uint64_t(signo)) || signo == SIGKILL || signo == SIGSTOP)
        return failf(EINVAL, "{}: pending signal {} cannot be queued", where, signo);
    return {};
}

const char* kind_name(images::VmaKind k) { return images::VmaKind_Name(k).c_str(); }

bool is_vdso_kind(images::VmaKind k) {
    return k == images::VMA_VDSO || k == images::VMA_VVAR || k == images::VMA_VVAR_VCLOCK;
}

const char* vdso_name(images::VmaKind k) {
    switch (k) {
    case images::VMA_VVAR: return "[vvar]";
    case images::VMA_VVAR_VCLOCK: return "[vvar_vclock]";
    default: return "[vdso]";
    }
}

}  // namespace

Status validate_threads(const RestoredProcessImages& p, const HostInfo& host) {
    const pid_t pid = p.entry.pid();
    const std::string core = core_file(pid);
    if (pid <= 0)
        return failf(EINVAL, "pstree.img: pid {} is not a valid pid", pid);
    if (p.core.pid() != pid)
        return failf(EINVAL, "{}: TaskCore.pid is {}, pstree.img says {}", core, p.core.pid(), pid);
    const auto& tids = p.entry.threads();
    if (tids.empty() || tids[0] != pid)
        return failf(EINVAL, "pstree.img: pid {}: the thread list must start with the pid itself", pid);
    if (size_t(tids.size()) > kMaxRestoreThreads)
        return failf(E2BIG, "pstree.img: pid {} has {} threads, more than the {} this restore accepts",
                     pid, tids.size(), kMaxRestoreThreads);
    if (p.core.threads_size() != tids.size())
        return failf(EINVAL, "{}: {} threads, but pstree.img lists {} for pid {}", core,
                     p.core.threads_size(), tids.size(), pid);
    std::set<int32_t> seen;
    for (int i = 0; i < tids.size(); i++) {
        const auto& t = p.core.threads(i);
        const std::string where = fmt::format("{}: thread record {} (tid {})", core, i, t.tid());
        if (t.tid() != tids[i])
            return failf(EINVAL, "{}: pstree.img has tid {} at this position", where, tids[i]);
        if (t.tid() <= 0 || !seen.insert(t.tid()).second)
            return failf(EINVAL, "{}: tid is invalid or repeated", where);
        UserRegs r = TRY_CTX(decode_user_regs(t.gpregs()), "{}", where);
        if (r[kCs] != kUserCs)
            return failf(EINVAL, "{}: cs is {:#x}: only 64-bit code (cs {:#x}) can be restored", where,
                         r[kCs], kUserCs);
        if (r[kFsBase] >= kUserAddressEnd || r[kGsBase] >= kUserAddressEnd)
            return failf(EINVAL, "{}: fs_base {:#x} / gs_base {:#x} outside user space", where,
                         r[kFsBase], r[kGsBase]);
        if (t.xsave().size() != host.xsave_size)
            return failf(EINVAL,
                         "{}: XSAVE area is {} bytes but this CPU's is {} (XCR0 {:#x}): the dump comes "
                         "from a machine with other FPU features and cannot be restored here",
                         where, t.xsave().size(), host.xsave_size, host.xcr0);
        uint64_t xstate_bv = load64(t.xsave(), kXsaveHeaderOffset);
        uint64_t xcomp_bv = load64(t.xsave(), kXsaveHeaderOffset + 8);
        if (xstate_bv & ~host.xcr0)
            return failf(EINVAL, "{}: XSAVE state uses features {:#x} that this CPU does not enable "
                                 "(XCR0 {:#x})", where, xstate_bv & ~host.xcr0, host.xcr0);
        if (xcomp_bv != 0)
            return failf(EINVAL, "{}: XSAVE area is in compacted format (XCOMP_BV {:#x}); ptrace gives "
                                 "the standard one", where, xcomp_bv);
        const auto& as = t.altstack();
        uint32_t mode = uint32_t(as.flags()) & ~(1u << 31);  // SS_AUTODISARM
        if (mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE)
            return failf(EINVAL, "{}: sigaltstack flags {:#x} are not valid", where, as.flags());
        if (t.rseq().ptr()) {
            if (t.rseq().len() < 32 || t.rseq().ptr() % 32 || t.rseq().ptr() >= kUserAddressEnd)
                return failf(EINVAL, "{}: rseq area {:#x} length {} is not a valid registration", where,
                             t.rseq().ptr(), t.rseq().len());
        }
        if (t.robust_list() && t.robust_list_len() != 24)
            return failf(EINVAL, "{}: robust list length {} (the kernel accepts only 24)", where,
                         t.robust_list_len());
        switch (t.sched_policy()) {
        case SCHED_OTHER:
        case SCHED_BATCH:
        case SCHED_IDLE:
            if (t.sched_priority() != 0)
                return failf(EINVAL, "{}: priority {} with a non-realtime policy", where,
                             t.sched_priority());
            break;
        case SCHED_FIFO:
        case SCHED_RR:
            if (t.sched_priority() < 1 || t.sched_priority() > 99)
                return failf(EINVAL, "{}: realtime priority {} out of 1..99", where, t.sched_priority());
            break;
        default:
            return failf(EINVAL, "{}: scheduling policy {} cannot be restored (SCHED_DEADLINE needs "
                                 "sched_setattr parameters the dump does not hold)", where,
                         t.sched_policy());
        }
        if (t.nice() < -20 || t.nice() > 19)
            return failf(EINVAL, "{}: nice {} out of -20..19", where, t.nice());
        if (t.comm().size() > 15)
            return failf(EINVAL, "{}: comm \"{}\" is longer than 15 bytes", where, t.comm());
        for (int j = 0; j < t.pending_size(); j++)
            TRY_VOID(check_siginfo(t.pending(j), fmt::format("{}: pending signal {}", where, j)));
    }
    return {};
}

Status validate_vmas(const RestoredProcessImages& p) {
    const pid_t pid = p.entry.pid();
    const std::string mm = mm_file(pid);
    const auto& vmas = p.mm.vmas();
    if (size_t(vmas.size()) > kMaxRestoreVmas)
        return failf(E2BIG, "{}: {} VMAs, more than {}", mm, vmas.size(), kMaxRestoreVmas);
    uint64_t prev_end = 0;
    constexpr uint32_t kKnownFlags = MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN |
                                     MAP_DENYWRITE | MAP_EXECUTABLE | MAP_LOCKED | MAP_NORESERVE;
    std::set<images::VmaKind> vdso_seen;
    for (int i = 0; i < vmas.size(); i++) {
        const auto& v = vmas[i];
        const std::string where =
            fmt::format("pid {}: {}: vma {} ({:#x}-{:#x} {})", pid, mm, i, v.start(), v.end(), v.path());
        if (!images::VmaKind_IsValid(v.kind()))
            return failf(EINVAL, "{}: unknown kind {}", where, int(v.kind()));
        if (v.kind() == images::VMA_VSYSCALL)
            continue;  // fixed by the kernel above user space, never mapped by us
        if (v.start() >= v.end() || !page_aligned(v.start()) || !page_aligned(v.end()))
            return failf(EINVAL, "{}: range is empty or not page aligned", where);
        if (v.end() > kUserAddressEnd)
            return failf(EINVAL, "{}: ends above the 47-bit user address space", where);
        if (v.start() < prev_end)
            return failf(EINVAL, "{}: overlaps or is out of order with the previous VMA (ends {:#x})",
                         where, prev_end);
        prev_end = v.end();
        if (v.prot() & ~uint32_t(PROT_READ | PROT_WRITE | PROT_EXEC))
            return failf(EINVAL, "{}: unknown protection bits {:#x}", where, v.prot());
        if (v.flags() & ~kKnownFlags)
            return failf(EINVAL, "{}: unknown or unsupported mapping flags {:#x}", where,
                         v.flags() & ~kKnownFlags);
        if (!page_aligned(v.pgoff()))
            return failf(EINVAL, "{}: file offset {:#x} is not page aligned", where, v.pgoff());
        if (v.madvise() >= 64)
            return failf(EINVAL, "{}: unknown madvise bits {:#x}", where, v.madvise());
        if (is_vdso_kind(v.kind())) {
            if (!vdso_seen.insert(v.kind()).second)
                return failf(EINVAL, "{}: a second {} VMA", where, vdso_name(v.kind()));
            continue;
        }
        switch (v.kind()) {
        case images::VMA_FILE_PRIVATE:
        case images::VMA_FILE_SHARED:
        case images::VMA_MEMFD_SHARED:
        case images::VMA_MEMFD_PRIVATE:
            if (v.path().empty() || (v.kind() <= images::VMA_FILE_SHARED && v.path()[0] != '/'))
                return failf(EINVAL, "{}: {} mapping without an absolute path", where,
                             kind_name(v.kind()));
            break;
        case images::VMA_SYSV_SHM:
            if (!(v.flags() & MAP_SHARED) || v.pgoff() != 0 || v.shmid() > uint64_t(INT32_MAX))
                return failf(EINVAL, "{}: System V segment {} mapping must be shared, from offset 0", where,
                             v.shmid());
            break;
        case images::VMA_ANON_SHARED:
            if (v.shmid() == 0)
                return failf(EINVAL, "{}: shared anonymous mapping without an identity (shmid)", where);
            break;
        default:
            break;
        }
    }
    for (int i = 0; i < p.mm.guards_size(); i++) {
        const auto& g = p.mm.guards(i);
        if (g.start() >= g.end() || !page_aligned(g.start()) || !page_aligned(g.end()))
            return failf(EINVAL, "pid {}: {}: guard region {} ({:#x}-{:#x}) is empty or unaligned", pid,
                         mm, i, g.start(), g.end());
        bool inside = false;
        for (const auto& v : vmas)
            if (v.kind() != images::VMA_VSYSCALL && g.start() >= v.start() && g.end() <= v.end())
                inside = true;
        if (!inside)
            return failf(EINVAL, "pid {}: {}: guard region {:#x}-{:#x} is not inside one VMA", pid, mm,
                         g.start(), g.end());
    }
    // The kernel checks PR_SET_MM_MAP too, but its EINVAL says nothing about which field.
    const auto& m = p.mm;
    struct Pair {
        const char* what;
        uint64_t lo, hi;
        bool strict;
    } pairs[] = {{"start_code/end_code", m.start_code(), m.end_code(), true},
                 {"start_data/end_data", m.start_data(), m.end_data(), false},
                 {"start_brk/brk", m.start_brk(), m.brk(), false},
                 {"arg_start/arg_end", m.arg_start(), m.arg_end(), false},
                 {"env_start/env_end", m.env_start(), m.env_end(), false}};
    for (const auto& pr : pairs)
        if (pr.hi >= kUserAddressEnd || (pr.strict ? pr.lo >= pr.hi : pr.lo > pr.hi))
            return failf(EINVAL, "pid {}: {}: {} = {:#x}/{:#x} are out of order or outside user space",
                         pid, mm, pr.what, pr.lo, pr.hi);
    if (m.start_stack() >= kUserAddressEnd)
        return failf(EINVAL, "pid {}: {}: start_stack {:#x} outside user space", pid, mm, m.start_stack());
    // mm->saved_auxv holds AT_VECTOR_SIZE words (about 50 on x86-64); PR_SET_MM_MAP has the
    // final say, this only keeps a hostile count from growing the blob's arguments.
    if (m.auxv_size() % 2 || m.auxv_size() > 128)
        return failf(EINVAL, "pid {}: {}: auxv has {} words (pairs, at most 128)", pid, mm, m.auxv_size());
    if (m.exe_path().empty() || m.exe_path()[0] != '/')
        return failf(EINVAL, "pid {}: {}: exe_path \"{}\" is not an absolute path", pid, mm, m.exe_path());
    return {};
}

Status validate_vdso(const images::Inventory& inv, const RestoredProcessImages& p, const HostInfo& host) {
    const pid_t pid = p.entry.pid();
    std::vector<const images::Vma*> dumped;
    for (const auto& v : p.mm.vmas())
        if (is_vdso_kind(v.kind()))
            dumped.push_back(&v);
    if (dumped.empty())
        return {};
    if (host.vdso.empty())
        return failf(ENOTSUP, "pid {}: the process has a vDSO but this kernel maps none (vdso=0?)", pid);
    std::string mine, theirs;
    for (const auto& h : host.vdso)
        mine += fmt::format(" {}+{:#x}/{:#x}", h.name, h.offset, h.size);
    uint64_t block = dumped.front()->start();
    for (const auto* v : dumped)
        theirs += fmt::format(" {}+{:#x}/{:#x}", vdso_name(v->kind()), v->start() - block,
                              v->end() - v->start());
    bool same = dumped.size() == host.vdso.size();
    for (size_t i = 0; same && i < dumped.size(); i++)
        same = host.vdso[i].name == vdso_name(dumped[i]->kind()) &&
               host.vdso[i].offset == dumped[i]->start() - block &&
               host.vdso[i].size == dumped[i]->end() - dumped[i]->start();
    // The inventory's record of the dumping kernel must agree with the VMAs themselves.
    if (same && inv.vdso().parts_size() > 0) {
        same = size_t(inv.vdso().parts_size()) == host.vdso.size();
        for (size_t i = 0; same && i < host.vdso.size(); i++)
            same = inv.vdso().parts(int(i)).name() == host.vdso[i].name &&
                   inv.vdso().parts(int(i)).offset() == host.vdso[i].offset &&
                   inv.vdso().parts(int(i)).size() == host.vdso[i].size;
    }
    if (!same)
        return failf(ENOTSUP,
                     "pid {}: {}: the dumped vDSO block ({} ) differs from this kernel's ({} ); restoring "
                     "across kernels with another vDSO layout needs a vDSO proxy, which this criu "
                     "does not have", pid, mm_file(pid), theirs, mine);
    return {};
}

Status validate_signals_and_timers(const RestoredProcessImages& p) {
    const pid_t pid = p.entry.pid();
    const std::string core = core_file(pid);
    std::set<uint32_t> signos;
    for (int i = 0; i < p.core.sigactions_size(); i++) {
        const auto& sa = p.core.sigactions(i);
        if (!valid_signo(sa.signo()) || sa.signo() == SIGKILL || sa.signo() == SIGSTOP ||
            !signos.insert(sa.signo()).second)
            return failf(EINVAL, "pid {}: {}: sigaction record {}: signal {} is invalid or repeated", pid,
                         core, i, sa.signo());
    }
    for (int i = 0; i < p.core.shared_pending_size(); i++)
        TRY_VOID(check_siginfo(p.core.shared_pending(i),
                               fmt::format("pid {}: {}: shared pending signal {}", pid, core, i)));
    const images::ItimerValue* its[] = {&p.core.itimer_real(), &p.core.itimer_virtual(),
                                        &p.core.itimer_prof()};
    for (const auto* it : its)
        if (it->interval_usec() >= 1000000 || it->value_usec() >= 1000000 ||
            it->interval_sec() > uint64_t(INT64_MAX) || it->value_sec() > uint64_t(INT64_MAX))
            return failf(EINVAL, "pid {}: {}: an itimer has microseconds >= 1000000 or a huge value", pid,
                         core);
    std::set<int32_t> ids;
    std::set<int32_t> tids(p.entry.threads().begin(), p.entry.threads().end());
    for (int i = 0; i < p.core.posix_timers_size(); i++) {
        const auto& t = p.core.posix_timers(i);
        const std::string where = fmt::format("pid {}: {}: POSIX timer record {} (id {})", pid, core, i, t.id());
        if (t.id() < 0 || !ids.insert(t.id()).second)
            return failf(EINVAL, "{}: id is negative or repeated", where);
        int notify = t.sigev_notify() & ~SIGEV_THREAD_ID;
        if (notify != SIGEV_SIGNAL && notify != SIGEV_NONE)
            return failf(EINVAL, "{}: sigev_notify {:#x} is not one the kernel knows", where,
                         t.sigev_notify());
        if (t.sigev_notify() & SIGEV_THREAD_ID) {
            if (!tids.count(t.notify_tid()))
                return failf(EINVAL, "{}: notifies tid {}, which is not a thread of pid {}", where,
                             t.notify_tid(), pid);
        }
        if (notify == SIGEV_SIGNAL && !valid_signo(uint64_t(t.signo())))
            return failf(EINVAL, "{}: signal {} is invalid", where, t.signo());
        if (t.clock_id() < 0 || t.clock_id() > 11)
            return failf(EINVAL, "{}: clock {} is invalid", where, t.clock_id());
    }
    return {};
}

Status validate_task_misc(const RestoredProcessImages& p) {
    const pid_t pid = p.entry.pid();
    const std::string core = core_file(pid);
    std::set<uint32_t> res;
    for (int i = 0; i < p.core.rlimits_size(); i++) {
        const auto& r = p.core.rlimits(i);
        if (r.resource() >= 16 || !res.insert(r.resource()).second || r.cur() > r.max())
            return failf(EINVAL, "pid {}: {}: rlimit record {} (resource {}, {}/{}) is invalid", pid, core,
                         i, r.resource(), r.cur(), r.max());
    }
    if (p.core.umask() > 0777)
        return failf(EINVAL, "pid {}: {}: umask {:o} is invalid", pid, core, p.core.umask());
    if (p.core.creds().groups_size() > 65536)
        return failf(EINVAL, "pid {}: {}: {} supplementary groups, more than NGROUPS_MAX", pid, core,
                     p.core.creds().groups_size());
    if (p.core.seccomp_size() > 1024)
        return failf(EINVAL, "pid {}: {}: {} seccomp filters", pid, core, p.core.seccomp_size());
    for (int i = 0; i < p.core.seccomp_size(); i++) {
        const auto& f = p.core.seccomp(i);
        size_t n = f.bpf().size() / 8;
        if (f.bpf().size() % 8 || n == 0 || n > 4096)
            return failf(EINVAL, "pid {}: {}: seccomp filter {} is {} bytes: not 1..4096 instructions of 8",
                         pid, core, i, f.bpf().size());
        // TSYNC is re-done by installing the filter in every thread; a NEW_LISTENER's fd
        // belonged to someone else and cannot be recreated.
        constexpr uint32_t kOk = 1u /*TSYNC*/ | 2u /*LOG*/ | 4u /*SPEC_ALLOW*/;
        if (f.flags() & ~kOk)
            return failf(ENOTSUP, "pid {}: {}: seccomp filter {} has flags {:#x} that cannot be restored",
                         pid, core, i, f.flags());
    }
    if (p.core.pdeath_signal() < 0 || p.core.pdeath_signal() > 64)
        return failf(EINVAL, "pid {}: {}: parent-death signal {} is invalid", pid, core,
                     p.core.pdeath_signal());
    if (p.fs) {
        if (p.fs->cwd().empty() || p.fs->cwd()[0] != '/' || p.fs->root().empty() || p.fs->root()[0] != '/')
            return failf(EINVAL, "pid {}: {}: cwd \"{}\" / root \"{}\" are not absolute paths", pid,
                         image_file_name(ImageType::Fs, pid), p.fs->cwd(), p.fs->root());
    }
    return {};
}

Status validate_process(const images::Inventory& inv, const RestoredProcessImages& p, const HostInfo& host) {
    if (p.entry.ppid() == 0 && inv.root_pid() != 0 && inv.root_pid() != p.entry.pid())
        return failf(EINVAL, "inventory.img names root pid {}, pstree.img starts with {}", inv.root_pid(),
                     p.entry.pid());
    if (inv.page_size() != 0 && inv.page_size() != 4096)
        return failf(EINVAL, "inventory.img: page size {} (this machine uses 4096)", inv.page_size());
    if (inv.xsave_size() != 0 && inv.xsave_size() != host.xsave_size)
        return failf(EINVAL,
                     "inventory.img: the dumping CPU's XSAVE area is {} bytes (XCR0 {:#x}), this CPU's is "
                     "{} (XCR0 {:#x}): FPU state cannot move between them",
                     inv.xsave_size(), inv.xcr0(), host.xsave_size, host.xcr0);
    TRY_VOID(validate_threads(p, host));
    TRY_VOID(validate_vmas(p));
    TRY_VOID(validate_vdso(inv, p, host));
    TRY_VOID(validate_signals_and_timers(p));
    TRY_VOID(validate_task_misc(p));
    TRY_VOID_CTX(validate_semadj(p.core), "{}", core_file(p.entry.pid()));
    return {};
}

}  // namespace criu
