#include "restore/blob_report.h"

#include <unistd.h>

#include <cstring>

#include "restore/pid_claim.h"

namespace criu {

const char* blob_step_name(uint32_t step) {
    switch (step) {
    case BLOB_STEP_CHILD_SETUP: return "preparing the process";
    case BLOB_STEP_ENTRY: return "entering the restorer";
    case BLOB_STEP_RSEQ_UNREGISTER: return "unregistering the restorer's rseq";
    case BLOB_STEP_VDSO_PARK: return "parking the vDSO";
    case BLOB_STEP_UNMAP_RESTORER: return "unmapping the restorer";
    case BLOB_STEP_VDSO_PLACE: return "moving the vDSO to its dumped address";
    case BLOB_STEP_VMA_MAP: return "mapping";
    case BLOB_STEP_VMA_MADVISE: return "madvise on";
    case BLOB_STEP_PAGES_READ: return "reading pages";
    case BLOB_STEP_VMA_PROTECT: return "setting the protection of";
    case BLOB_STEP_GUARD_INSTALL: return "installing guard region";
    case BLOB_STEP_MM_MAP: return "PR_SET_MM_MAP (code/data/brk/stack/auxv/exe)";
    case BLOB_STEP_SIGACTION: return "setting the handler of";
    case BLOB_STEP_ITIMER: return "setting itimer";
    case BLOB_STEP_DUMPABLE: return "PR_SET_DUMPABLE";
    case BLOB_STEP_THREAD_CLONE: return "creating thread";
    case BLOB_STEP_POSIX_TIMER: return "creating POSIX timer";
    case BLOB_STEP_SIGQUEUE: return "queueing pending";
    case BLOB_STEP_TID_ADDRESS: return "set_tid_address";
    case BLOB_STEP_ROBUST_LIST: return "set_robust_list";
    case BLOB_STEP_SIGALTSTACK: return "sigaltstack";
    case BLOB_STEP_COMM: return "setting comm";
    case BLOB_STEP_SCHED: return "sched_setscheduler";
    case BLOB_STEP_NICE: return "setpriority (nice)";
    case BLOB_STEP_TIMERSLACK: return "PR_SET_TIMERSLACK";
    case BLOB_STEP_FS_BASE: return "ARCH_SET_FS";
    case BLOB_STEP_GS_BASE: return "ARCH_SET_GS";
    case BLOB_STEP_RSEQ_REGISTER: return "registering rseq";
    case BLOB_STEP_CREDS_GROUPS: return "setgroups";
    case BLOB_STEP_CREDS_GID: return "setting gids";
    case BLOB_STEP_CREDS_UID: return "setting uids";
    case BLOB_STEP_CREDS_BOUNDING: return "dropping from the bounding set";
    case BLOB_STEP_CREDS_SECUREBITS: return "PR_SET_SECUREBITS";
    case BLOB_STEP_CREDS_CAPS: return "capset";
    case BLOB_STEP_CREDS_AMBIENT: return "raising ambient";
    case BLOB_STEP_NO_NEW_PRIVS: return "PR_SET_NO_NEW_PRIVS";
    case BLOB_STEP_PDEATHSIG: return "PR_SET_PDEATHSIG";
    case BLOB_STEP_GO_WAIT: return "waiting for criu's go";
    case BLOB_STEP_SECCOMP: return "installing seccomp filter";
    case BLOB_STEP_READY: return "ready";
    case BLOB_STEP_DONE: return "done";
    case BLOB_STEP_LAZY_UFFD: return "handing over the userfaultfd";
    case BLOB_STEP_UFFD_SETUP: return "registering lazy memory with userfaultfd";
    default: return "an unknown step";
    }
}

Expected<ReportRead> read_blob_report(int fd) {
    ReportRead out;
    blob_report& r = out.report;
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = ::read(fd, reinterpret_cast<char*>(&r) + got, sizeof(r) - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN && got == 0)
                return out;
            if (errno == EAGAIN)
                continue;  // a report is written in one piece: the rest is on its way
            return fail_errno("reading the restorer's report pipe");
        }
        if (n == 0) {
            if (got != 0)
                return failf(EIO, "the restorer's report pipe closed after {} of {} bytes", got, sizeof(r));
            out.kind = ReportRead::Eof;
            return out;
        }
        got += size_t(n);
    }
    if (r.magic != BLOB_REPORT_MAGIC || r.step >= BLOB_STEP_COUNT)
        return failf(EIO, "garbled report from the restorer (magic {:#x}, step {})", r.magic, r.step);
    r.msg[sizeof(r.msg) - 1] = 0;
    out.kind = ReportRead::Got;
    return out;
}

namespace {

std::string vma_detail(const BlobArgs& args, const RestoredProcessImages& p, uint64_t idx) {
    const auto* a = reinterpret_cast<const blob_args*>(args.bytes().data());
    if (idx >= a->nr_vmas)
        return fmt::format("vma #{}", idx);
    blob_vma v;
    std::memcpy(&v, args.bytes().data() + a->vmas_off + idx * sizeof(v), sizeof(v));
    std::string path;
    for (const auto& m : p.mm.vmas())
        if (m.start() == v.start)
            path = m.path();
    return fmt::format("vma {:#x}-{:#x}{}{} (prot {:#x}, flags {:#x})", v.start, v.end, path.empty() ? "" : " ",
                       path, v.prot, v.map_flags);
}

std::string run_detail(const BlobArgs& args, uint64_t idx) {
    const auto* a = reinterpret_cast<const blob_args*>(args.bytes().data());
    if (idx >= a->nr_runs)
        return fmt::format("run #{}", idx);
    blob_page_run r;
    std::memcpy(&r, args.bytes().data() + a->runs_off + idx * sizeof(r), sizeof(r));
    return fmt::format("of {:#x} ({} pages, offset {})", r.vaddr, r.nr_pages, r.file_off);
}

}  // namespace

Error report_to_error(const blob_report& r, const BlobArgs& args, const RestoredProcessImages& p) {
    const pid_t pid = p.entry.pid();
    if (r.step == BLOB_STEP_CHILD_SETUP)
        return Error(r.err, r.msg[0] ? std::string(r.msg) : fmt::format("pid {}: preparing the process", pid));
    std::string what = blob_step_name(r.step);
    switch (r.step) {
    case BLOB_STEP_VMA_MAP:
    case BLOB_STEP_VMA_MADVISE:
    case BLOB_STEP_VMA_PROTECT:
        what += " " + vma_detail(args, p, r.detail);
        break;
    case BLOB_STEP_PAGES_READ:
        what += " " + run_detail(args, r.detail);
        break;
    case BLOB_STEP_SIGACTION:
    case BLOB_STEP_SIGQUEUE:
        what += fmt::format(" signal {}", r.detail);
        break;
    case BLOB_STEP_ITIMER:
    case BLOB_STEP_SECCOMP:
    case BLOB_STEP_GUARD_INSTALL:
    case BLOB_STEP_VDSO_PARK:
    case BLOB_STEP_VDSO_PLACE:
        what += fmt::format(" #{}", r.detail);
        break;
    case BLOB_STEP_POSIX_TIMER:
        what += fmt::format(" id {}", r.detail);
        break;
    case BLOB_STEP_UFFD_SETUP:
        if (r.detail != ~0ull)
            what += fmt::format(" (lazy range #{})", r.detail);
        break;
    case BLOB_STEP_CREDS_BOUNDING:
    case BLOB_STEP_CREDS_AMBIENT:
        what += fmt::format(" capability {}", r.detail);
        break;
    case BLOB_STEP_THREAD_CLONE:
        what += fmt::format(" with tid {}", r.detail);
        if (r.err == EEXIST)
            what += fmt::format(" ({})", find_pid_holder(pid_t(r.detail)).describe(pid_t(r.detail)));
        break;
    default:
        break;
    }
    return Error(r.err, fmt::format("pid {} tid {}: restore failed in step \"{}\"", pid, r.tid, what));
}

}  // namespace criu
