// Probes for process-level interfaces: ptrace, /proc/PID/map_files, kcmp, PID
// control (clone3 set_tid, ns_last_pid), pidfds, PR_SET_MM_MAP and memfd.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <vector>

#include "criu/core/clone3_args.h"
#include "kernel-feature-check/kernel_abi.h"
#include "kernel-feature-check/probe_util.h"

namespace criu::kfc {

namespace {

constexpr int kTimeoutMs = kProbeTimeoutMs;

long kcmp(pid_t a, pid_t b, int type, unsigned long x, unsigned long y) {
    return syscall(SYS_kcmp, a, b, type, x, y);
}

int pidfd_open(pid_t pid) { return int(syscall(SYS_pidfd_open, pid, 0)); }

ProbeResult probe_ptrace_seize() {
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    if (auto st = seize_and_stop(*child, kTimeoutMs); !st)
        return no(st.error().str());
    if (ptrace(PTRACE_DETACH, child->pid(), nullptr, nullptr) < 0)
        return no_errno("PTRACE_DETACH");
    return yes("PTRACE_SEIZE + PTRACE_INTERRUPT gave PTRACE_EVENT_STOP, detach worked");
}

ProbeResult probe_rseq_config() {
    // glibc >= 2.35 registers rseq for every thread at start; a forked child keeps it.
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    if (auto st = seize_and_stop(*child, kTimeoutMs); !st)
        return no(st.error().str());
    abi::PtraceRseqConfiguration conf{};
    long n = ptrace(static_cast<__ptrace_request>(abi::kPtraceGetRseqConfiguration), child->pid(),
                    reinterpret_cast<void*>(sizeof conf), &conf);
    if (n < 0)
        return no_errno("PTRACE_GET_RSEQ_CONFIGURATION");
    if (conf.rseq_abi_pointer == 0)
        return yes("request works; the probe child has no rseq registered (glibc.pthread.rseq=0?)");
    return yes(fmt::format("rseq area {} size {} signature {}", hex(conf.rseq_abi_pointer), conf.rseq_abi_size,
                           hex(conf.signature)));
}

ProbeResult probe_seccomp_filter() {
    auto child = ScopedChild::spawn([](int ready) -> int {
        sock_filter insn[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        sock_fprog prog{1, insn};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            return 10;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
            return 11;
        child_ready(ready);
        child_park();
    });
    if (!child)
        return no(child.error().str());
    if (auto st = child->wait_ready(kTimeoutMs); !st)
        return no("the probe child could not install a seccomp filter: " + st.error().str());
    if (auto st = seize_and_stop(*child, kTimeoutMs); !st)
        return no(st.error().str());
    auto req = static_cast<__ptrace_request>(abi::kPtraceSeccompGetFilter);
    long count = ptrace(req, child->pid(), nullptr, nullptr);
    if (count < 0)
        return no_errno("PTRACE_SECCOMP_GET_FILTER");
    std::vector<sock_filter> prog(static_cast<size_t>(count));
    if (count != 1 || ptrace(req, child->pid(), nullptr, prog.data()) != 1)
        return no(fmt::format("expected the 1-instruction filter back, got {} instructions", count));
    if (prog[0].code != (BPF_RET | BPF_K) || prog[0].k != SECCOMP_RET_ALLOW)
        return no(fmt::format("filter read back differs: code {:#x} k {:#x}", prog[0].code, prog[0].k));
    return yes("read back the child's 1-instruction cBPF filter (RET ALLOW)");
}

// Fields of /proc/self/stat, 1-based as in proc(5); comm may hold spaces, so
// counting starts after the last ')'.
Expected<std::vector<uint64_t>> stat_fields() {
    std::string s = TRY(read_text("/proc/self/stat"));
    size_t p = s.rfind(')');
    if (p == std::string::npos)
        return fail(EINVAL, "malformed /proc/self/stat");
    std::vector<uint64_t> f(3, 0);  // fields 1 and 2 (pid, comm) are not numbers we need
    const char* c = s.data() + p + 1;
    const char* end = s.data() + s.size();
    while (c < end) {
        while (c < end && *c == ' ')
            c++;
        const char* b = c;
        while (c < end && *c != ' ' && *c != '\n')
            c++;
        uint64_t v = 0;
        std::from_chars(b, c, v);  // field 3 (state) is a letter and stays 0
        f.push_back(v);
        if (c < end && *c == '\n')
            break;
    }
    return f;
}

ProbeResult probe_pr_set_mm_map() {
    // In a child: a wrong value (say brk) would break malloc in the caller.
    return run_isolated([]() -> ProbeResult {
        unsigned int size = 0;
        if (prctl(abi::kPrSetMm, abi::kPrSetMmMapSize, &size, 0, 0) < 0)
            return no_errno("PR_SET_MM_MAP_SIZE");
        if (size != sizeof(abi::PrctlMmMap))
            return no(fmt::format("kernel struct prctl_mm_map is {} bytes, we know {}", size,
                                  sizeof(abi::PrctlMmMap)));
        auto f = stat_fields();
        if (!f)
            return no(f.error().str());
        if (f->size() < 52)
            return no("/proc/self/stat has fewer than 51 fields");
        auto auxv = read_text("/proc/self/auxv");
        if (!auxv)
            return no(auxv.error().str());
        const auto& v = *f;
        abi::PrctlMmMap m{};
        m.start_code = v[26];
        m.end_code = v[27];
        m.start_stack = v[28];
        m.start_data = v[45];
        m.end_data = v[46];
        m.start_brk = v[47];
        m.brk = uint64_t(syscall(SYS_brk, 0));
        m.arg_start = v[48];
        m.arg_end = v[49];
        m.env_start = v[50];
        m.env_end = v[51];
        m.auxv = reinterpret_cast<uintptr_t>(auxv->data());
        m.auxv_size = uint32_t(auxv->size());
        m.exe_fd = uint32_t(-1);  // -1: keep /proc/self/exe (changing it gives EBUSY while mapped)
        if (prctl(abi::kPrSetMm, abi::kPrSetMmMap, &m, sizeof m, 0) < 0)
            return no_errno("PR_SET_MM_MAP same-value round trip");
        return yes(fmt::format("struct size {}, same-value round trip accepted", size));
    });
}

ProbeResult probe_map_files() {
    // A shared anonymous mapping is shmem-backed, so it has a map_files entry (a
    // private anonymous one has none). Opening it needs CAP_CHECKPOINT_RESTORE.
    size_t pg = page_size();
    auto m = ScopedMapping::map(pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    if (!m)
        return no(m.error().str());
    const uint64_t magic = 0x6b66632d6d617066;
    std::memcpy(m->data(), &magic, sizeof magic);
    std::string path = fmt::format("/proc/self/map_files/{:x}-{:x}", m->addr(), m->addr() + pg);
    char target[256] = {};
    ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n < 0)
        return no_errno("readlink " + path);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return no_errno("open " + path);
    uint64_t got = 0;
    if (pread(fd.get(), &got, sizeof got, 0) != sizeof got || got != magic)
        return no("reading through the map_files fd did not return the mapping's bytes");
    return yes(fmt::format("readlink gives \"{}\", open + pread see the mapping's data", target));
}

ProbeResult probe_kcmp() {
    UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
    UniqueFd b(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!a || !b)
        return no_errno("open /dev/null");
    UniqueFd a2(fcntl(a.get(), F_DUPFD_CLOEXEC, 0));
    if (!a2)
        return no_errno("dup");
    pid_t self = getpid();
    long same = kcmp(self, self, abi::kKcmpFile, a.get(), a2.get());
    if (same < 0)
        return no_errno("kcmp(KCMP_FILE)");
    long diff = kcmp(self, self, abi::kKcmpFile, a.get(), b.get());
    if (same != 0 || (diff != 1 && diff != 2))
        return no(fmt::format("kcmp(KCMP_FILE) gave {} for a dup and {} for another open", same, diff));
    // Across processes, as the dumper uses it: the child inherited `a`.
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    long cross = kcmp(self, child->pid(), abi::kKcmpFile, a.get(), a.get());
    if (cross != 0)
        return cross < 0 ? no_errno("kcmp across fork") : no("kcmp across fork: inherited fd compared unequal");
    return yes("KCMP_FILE: dup = 0, other open = ordering, inherited across fork = 0");
}

ProbeResult probe_kcmp_epoll_tfd() {
    UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
    UniqueFd ev(eventfd(0, EFD_CLOEXEC));
    UniqueFd other(eventfd(0, EFD_CLOEXEC));
    if (!ep || !ev || !other)
        return no_errno("epoll_create1/eventfd");
    epoll_event e{EPOLLIN, {}};
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, ev.get(), &e) < 0)
        return no_errno("EPOLL_CTL_ADD");
    // The epoll item keeps the fd number it was added with. Move the file to another
    // number, as a program may have done before the dump: fdinfo's tfd is then stale
    // and only KCMP_EPOLL_TFD can tell which open file it is.
    int old_no = ev.get();
    UniqueFd moved(fcntl(ev.get(), F_DUPFD_CLOEXEC, 0));
    if (!moved)
        return no_errno("dup");
    ev.reset();
    pid_t self = getpid();
    abi::KcmpEpollSlot slot{uint32_t(ep.get()), uint32_t(old_no), 0};
    long r = kcmp(self, self, abi::kKcmpEpollTfd, moved.get(), reinterpret_cast<uintptr_t>(&slot));
    if (r < 0)
        return no_errno("kcmp(KCMP_EPOLL_TFD)");
    long r2 = kcmp(self, self, abi::kKcmpEpollTfd, other.get(), reinterpret_cast<uintptr_t>(&slot));
    if (r != 0 || r2 == 0)
        return no(fmt::format("KCMP_EPOLL_TFD gave {} for the target and {} for another file", r, r2));
    return yes("target of a stale epoll tfd number matched after dup+close");
}

Expected<long> read_long_file(const char* path) {
    std::string s = TRY(read_text(path));
    long v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc())
        return failf(EINVAL, "{} does not hold a number", path);
    return v;
}

bool pid_in_use(long pid) {
    struct stat st;
    return stat(fmt::format("/proc/{}", pid).c_str(), &st) == 0;
}

// A pid likely to be free: a little above the last one handed out, so the probe
// does not collide with the pids that forks are about to get anyway.
long pick_free_pid(long last, long pid_max, int attempt) {
    long cand = last + 200 + attempt * 37;
    if (cand >= pid_max - 1)
        cand = 400 + attempt * 37;
    while (pid_in_use(cand) && cand < pid_max - 1)
        cand++;
    return cand;
}

ProbeResult probe_clone3_set_tid() {
    auto last = read_long_file("/proc/sys/kernel/ns_last_pid");
    auto max = read_long_file("/proc/sys/kernel/pid_max");
    if (!last || !max)
        return no((last ? max.error() : last.error()).str());
    for (int attempt = 0; attempt < 4; attempt++) {
        pid_t want = pid_t(pick_free_pid(*last, *max, attempt));
        criu_clone_args args{};
        args.exit_signal = SIGCHLD;
        args.set_tid = reinterpret_cast<uintptr_t>(&want);
        args.set_tid_size = 1;
        long r = syscall(SYS_clone3, &args, sizeof args);
        if (r == 0)
            _exit(0);  // the child: a fork-like copy, leaves at once
        if (r < 0) {
            if (errno == EEXIST)  // someone took it in between; try another
                continue;
            return no_errno(fmt::format("clone3(set_tid={})", want));
        }
        int st;
        while (waitpid(pid_t(r), &st, 0) < 0 && errno == EINTR) {
        }
        if (r != want)
            return no(fmt::format("clone3 asked for pid {} but the child got {}", want, r));
        return yes(fmt::format("child created with the requested pid {}", want));
    }
    return no("every chosen pid was taken (EEXIST)");
}

ProbeResult probe_ns_last_pid() {
    const char* path = "/proc/sys/kernel/ns_last_pid";
    UniqueFd fd(open(path, O_RDWR | O_CLOEXEC));
    if (!fd)
        return no_errno(fmt::format("open {} read-write", path));
    auto max = read_long_file("/proc/sys/kernel/pid_max");
    if (!max)
        return no(max.error().str());
    // CRIU serialises ns_last_pid users with flock on this file; do the same so two
    // restores (or a restore and this probe) do not steer each other's pids.
    if (flock(fd.get(), LOCK_EX) < 0)
        return no_errno("flock ns_last_pid");
    // Any fork on the system between our write and our fork takes the pid; retry a
    // number of times so a busy machine (a parallel build forks hundreds of times a second, and
    // we can be preempted between the write and the fork) does not read as "absent".
    ProbeResult res = no("the next fork never got the steered pid (other forks raced, 64 tries)");
    for (int attempt = 0; attempt < 64; attempt++) {
        char buf[32] = {};
        if (pread(fd.get(), buf, sizeof buf - 1, 0) <= 0) {
            res = no_errno("read ns_last_pid");
            break;
        }
        long want = pick_free_pid(atol(buf), *max, attempt);
        std::string val = std::to_string(want - 1);
        if (pwrite(fd.get(), val.data(), val.size(), 0) < 0) {
            res = no_errno("write ns_last_pid");
            break;
        }
        auto child = ScopedChild::spawn([](int) { return 0; });
        if (!child) {
            res = no(child.error().str());
            break;
        }
        if (child->pid() == want) {
            res = yes(fmt::format("wrote {}, the next fork got pid {}", want - 1, want));
            break;
        }
    }
    flock(fd.get(), LOCK_UN);
    return res;
}

ProbeResult probe_pidfd_open() {
    auto child = ScopedChild::spawn([](int) -> int { child_park(); });
    if (!child)
        return no(child.error().str());
    UniqueFd pfd(pidfd_open(child->pid()));
    if (!pfd)
        return no_errno("pidfd_open");
    pollfd p{pfd.get(), POLLIN, 0};
    if (poll(&p, 1, 0) != 0)
        return no("pidfd polled readable while the process was alive");
    if (syscall(SYS_pidfd_send_signal, pfd.get(), SIGKILL, nullptr, 0) < 0)
        return no_errno("pidfd_send_signal");
    if (poll(&p, 1, kTimeoutMs) != 1)
        return no("pidfd did not become readable when the process died");
    return yes("pidfd_open, pidfd_send_signal and exit notification by poll work");
}

ProbeResult probe_pidfd_getfd() {
    constexpr int kChildFd = 321;  // a fixed number both sides know
    constexpr uint64_t kValue = 42;
    auto child = ScopedChild::spawn([](int ready) -> int {
        int e = eventfd(unsigned(kValue), 0);
        if (e < 0 || dup2(e, kChildFd) < 0)
            return 10;
        child_ready(ready);
        child_park();
    });
    if (!child)
        return no(child.error().str());
    if (auto st = child->wait_ready(kTimeoutMs); !st)
        return no(st.error().str());
    UniqueFd pfd(pidfd_open(child->pid()));
    if (!pfd)
        return no_errno("pidfd_open");
    UniqueFd fd(int(syscall(SYS_pidfd_getfd, pfd.get(), kChildFd, 0)));
    if (!fd)
        return no_errno("pidfd_getfd");
    uint64_t v = 0;
    if (read(fd.get(), &v, sizeof v) != sizeof v || v != kValue)
        return no("the duplicated eventfd does not hold the child's counter");
    return yes("duplicated a child's eventfd into this process and read its counter");
}

ProbeResult probe_memfd() {
    UniqueFd fd(memfd_create("criu-kfc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        return no_errno("memfd_create");
    size_t pg = page_size();
    if (ftruncate(fd.get(), off_t(pg)) < 0 || pwrite(fd.get(), "kfc", 3, 0) != 3)
        return no_errno("fill memfd");
    int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    if (fcntl(fd.get(), F_ADD_SEALS, seals) < 0)
        return no_errno("F_ADD_SEALS");
    int got = fcntl(fd.get(), F_GET_SEALS);
    if (got < 0 || (got & seals) != seals)
        return no(fmt::format("F_GET_SEALS gave {:#x}", got));
    if (pwrite(fd.get(), "x", 1, 0) >= 0 || errno != EPERM)
        return no("a write-sealed memfd accepted a write");
    char link[128] = {};
    if (readlink(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), link, sizeof link - 1) < 0)
        return no_errno("readlink memfd");
    return yes(fmt::format("memfd_create + seals work; fd link \"{}\"", link));
}

const Probe kProbes[] = {
    {"ptrace_seize", Category::Required, "stopping every thread without signals (seize + interrupt)",
     "none: ptrace is how this tool stops and inspects tasks", probe_ptrace_seize},
    {"map_files", Category::Required, "reading shared and file mappings via /proc/PID/map_files",
     "none: shared memory and deleted-file mappings could not be dumped", probe_map_files},
    {"kcmp", Category::Required, "telling shared files, fs, vm and sighand apart across tasks",
     "none: sharing between tasks could not be detected", probe_kcmp},
    {"clone3_set_tid", Category::Required, "restoring tasks and threads with their original PIDs/TIDs",
     "ns_last_pid + fork, racy and not for threads", probe_clone3_set_tid},
    {"pidfd_open", Category::Required, "race-free handles on tasks being dumped or restored",
     "none: pid reuse during a dump could not be ruled out", probe_pidfd_open},
    {"pidfd_getfd", Category::Required, "copying a task's fds into the dumper without a parasite",
     "none in this tool (CRIU injects a parasite that sends fds over SCM_RIGHTS)", probe_pidfd_getfd},
    {"pr_set_mm_map", Category::Required, "restoring brk, arg/env, auxv and exe link in one call",
     "none: restored tasks would have wrong brk and /proc/PID/cmdline", probe_pr_set_mm_map},
    {"ns_last_pid", Category::SomeStates, "steering the next PID when clone3 set_tid is unavailable",
     "clone3 set_tid (preferred when present)", probe_ns_last_pid},
    {"kcmp_epoll_tfd", Category::SomeStates, "dumping epoll sets whose target fds were dup'ed or moved",
     "trust fdinfo tfd numbers; refuse epolls whose tfd is closed", probe_kcmp_epoll_tfd},
    {"ptrace_rseq_config", Category::SomeStates, "dumping tasks with registered rseq (every glibc >= 2.35 thread)",
     "refuse such tasks unless started with GLIBC_TUNABLES=glibc.pthread.rseq=0", probe_rseq_config},
    {"ptrace_seccomp_filter", Category::SomeStates, "dumping tasks with seccomp filters",
     "refuse tasks in seccomp filter mode", probe_seccomp_filter},
    {"memfd", Category::SomeStates, "dumping and restoring memfds with their seals",
     "refuse tasks holding memfds", probe_memfd},
};

}  // namespace

std::span<const Probe> process_probes() { return kProbes; }

}  // namespace criu::kfc
