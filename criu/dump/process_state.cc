#include "criu/dump/process_state.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <cstring>

namespace criu {

namespace {

// The kernel's struct sigaction for rt_sigaction (x86-64), not glibc's.
struct KernelSigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

constexpr int kMaxSignal = 64;
constexpr size_t kSigactionArea = 0;     // scratch offset: 65 slots of 32 bytes
constexpr size_t kValueArea = 4096;      // scratch offset for small out-values

void set_itimer(images::ItimerValue* out, const itimerval& v) {
    out->set_interval_sec(v.it_interval.tv_sec);
    out->set_interval_usec(v.it_interval.tv_usec);
    out->set_value_sec(v.it_value.tv_sec);
    out->set_value_usec(v.it_value.tv_usec);
}

uint64_t to_ns(const timespec& t) { return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec); }

Expected<int> remote_prctl_int(RemoteSyscalls& rs, const char* name, int option) {
    int v = 0;
    TRY_VOID(rs.write_scratch(kValueArea, &v, sizeof(v)));
    TRY(rs.syscall_checked(name, SYS_prctl, option, (rs.scratch() + kValueArea).addr()));
    TRY_VOID(rs.read_scratch(kValueArea, &v, sizeof(v)));
    return v;
}

}  // namespace

Status preflight_process(pid_t pid) {
    ProcStatus st = TRY(read_status(pid));
    std::vector<std::string> problems;
    if (st.tgid != pid)
        problems.push_back(fmt::format("pid {} is a thread of process {}", pid, st.tgid));
    if (st.state == 'Z' || st.state == 'X')
        problems.push_back(fmt::format("pid {} is a zombie", pid));
    if (st.tracer_pid)
        problems.push_back(fmt::format("pid {} is traced by pid {}", pid, st.tracer_pid));
    if (st.seccomp == 1)
        problems.push_back(fmt::format("pid {} is in seccomp strict mode, which cannot be restored", pid));
    if (st.x86_thread_features.find("shstk") != std::string::npos)
        problems.push_back(fmt::format("pid {} uses CET shadow stacks (not supported)", pid));
    if (problems.empty())
        return {};
    std::string msg = problems[0];
    for (size_t i = 1; i < problems.size(); ++i)
        msg += "; " + problems[i];
    return fail(ENOTSUP, msg);
}

Status dump_process_state(SeizedProcess& sp, RemoteSyscalls& rs, const ProcStat& stat, const ProcStatus& status,
                          images::TaskCore& core, Log& log) {
    pid_t pid = sp.pid();
    Task& main = sp.main_thread();
    core.set_pid(pid);
    core.set_comm(stat.comm);
    core.set_exit_signal(stat.exit_signal);

    // Signal actions: one rt_sigaction per signal, results collected from the scratch area.
    for (int sig = 1; sig <= kMaxSignal; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        TRY(rs.syscall_checked("rt_sigaction", SYS_rt_sigaction, sig, 0,
                               (rs.scratch() + kSigactionArea + sig * sizeof(KernelSigaction)).addr(), 8));
    }
    KernelSigaction acts[kMaxSignal + 1];
    TRY_VOID(rs.read_scratch(kSigactionArea, acts, sizeof(acts)));
    for (int sig = 1; sig <= kMaxSignal; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        auto* a = core.add_sigactions();
        a->set_signo(sig);
        a->set_handler(acts[sig].handler);
        a->set_flags(acts[sig].flags);
        a->set_restorer(acts[sig].restorer);
        a->set_mask(acts[sig].mask);
    }

    // ITIMER_REAL keeps running while the process is stopped. When it expires, the kernel queues
    // SIGALRM and leaves the timer unarmed until that SIGALRM is dequeued, which re-arms it with
    // the interval (posixtimer_rearm_itimer). So "value 0, interval set" is only a live timer
    // together with its pending SIGALRM: read without it, the restore would disarm the timer
    // for good (seen: one restore in ~90 lost its 200 ms itimer). The timer is read after the
    // pending signals, and those are read again if it expired in between.
    auto get_itimer = [&](int which) -> Expected<itimerval> {
        itimerval v{};
        TRY(rs.syscall_checked("getitimer", SYS_getitimer, which, (rs.scratch() + kValueArea).addr()));
        TRY_VOID(rs.read_scratch(kValueArea, &v, sizeof(v)));
        return v;
    };
    auto expired = [](const itimerval& v) {
        return v.it_value.tv_sec == 0 && v.it_value.tv_usec == 0 &&
               (v.it_interval.tv_sec != 0 || v.it_interval.tv_usec != 0);
    };
    std::vector<siginfo_t> shared = TRY(main.peek_siginfo(true));
    itimerval real = TRY(get_itimer(ITIMER_REAL));
    auto has_alarm = [&] {
        return std::any_of(shared.begin(), shared.end(), [](const siginfo_t& si) { return si.si_signo == SIGALRM; });
    };
    if (expired(real) && !has_alarm()) {
        shared = TRY(main.peek_siginfo(true));  // it expired after the first look: SIGALRM is queued now
        if (!has_alarm())
            log.warn("dump", "pid {}: ITIMER_REAL has expired but no SIGALRM is pending (ignored?): it "
                             "is restored as the kernel shows it now, unarmed", pid);
    }
    for (const siginfo_t& si : shared)
        core.add_shared_pending()->set_siginfo(std::string(reinterpret_cast<const char*>(&si), sizeof(si)));

    set_itimer(core.mutable_itimer_real(), real);
    set_itimer(core.mutable_itimer_virtual(), TRY(get_itimer(ITIMER_VIRTUAL)));
    set_itimer(core.mutable_itimer_prof(), TRY(get_itimer(ITIMER_PROF)));

    // /proc/PID/timers names the timers but has no times (KERNEL-NOTES section 2).
    for (const ProcTimer& t : TRY(read_timers(pid))) {
        itimerspec v{};
        TRY(rs.syscall_checked("timer_gettime", SYS_timer_gettime, t.id, (rs.scratch() + kValueArea).addr()));
        TRY_VOID(rs.read_scratch(kValueArea, &v, sizeof(v)));
        long overrun = TRY(rs.syscall_checked("timer_getoverrun", SYS_timer_getoverrun, t.id));
        auto* pt = core.add_posix_timers();
        pt->set_id(t.id);
        pt->set_clock_id(t.clock_id);
        pt->set_sigev_notify(t.notify);
        pt->set_signo(t.signo);
        pt->set_sigval(t.sigval);
        pt->set_notify_tid(t.notify_pid);
        pt->set_value_ns(to_ns(v.it_value));
        pt->set_interval_ns(to_ns(v.it_interval));
        pt->set_overrun(static_cast<int32_t>(overrun));
    }

    for (int r = 0; r < RLIM_NLIMITS; ++r) {
        rlimit64 old{};
        if (prlimit64(pid, static_cast<__rlimit_resource>(r), nullptr, &old) < 0)
            return fail_errno("pid {}: prlimit({})", pid, r);
        auto* rl = core.add_rlimits();
        rl->set_resource(r);
        rl->set_cur(old.rlim_cur);
        rl->set_max(old.rlim_max);
    }

    auto* cr = core.mutable_creds();
    cr->set_uid(status.uid[0]);
    cr->set_euid(status.uid[1]);
    cr->set_suid(status.uid[2]);
    cr->set_fsuid(status.uid[3]);
    cr->set_gid(status.gid[0]);
    cr->set_egid(status.gid[1]);
    cr->set_sgid(status.gid[2]);
    cr->set_fsgid(status.gid[3]);
    for (uint32_t g : status.groups)
        cr->add_groups(g);
    cr->set_cap_inh(status.cap_inh);
    cr->set_cap_prm(status.cap_prm);
    cr->set_cap_eff(status.cap_eff);
    cr->set_cap_bnd(status.cap_bnd);
    cr->set_cap_amb(status.cap_amb);
    cr->set_securebits(static_cast<uint32_t>(TRY(rs.syscall_checked("prctl(PR_GET_SECUREBITS)", SYS_prctl,
                                                                     PR_GET_SECUREBITS))));

    std::string pers = TRY(read_proc_file(fmt::format("/proc/{}/personality", pid)));
    core.set_personality(static_cast<uint32_t>(std::strtoul(pers.c_str(), nullptr, 16)));
    if (!status.umask)
        return failf(ENOTSUP, "pid {}: /proc status has no Umask line (kernel older than 4.7)", pid);
    core.set_umask(*status.umask);
    core.set_no_new_privs(status.no_new_privs);

    if (status.seccomp == 1)
        return failf(ENOTSUP, "pid {} is in seccomp strict mode, which cannot be restored", pid);
    if (status.seccomp == 2) {
        for (auto& f : TRY_CTX(main.seccomp_filters(), "pid {}: seccomp filters", pid)) {
            auto* sf = core.add_seccomp();
            sf->set_bpf(std::string(reinterpret_cast<const char*>(f.bpf.data()), f.bpf.size()));
            sf->set_flags(f.flags);
        }
    }

    core.set_pdeath_signal(TRY(remote_prctl_int(rs, "prctl(PR_GET_PDEATHSIG)", PR_GET_PDEATHSIG)));
    core.set_child_subreaper(TRY(remote_prctl_int(rs, "prctl(PR_GET_CHILD_SUBREAPER)", PR_GET_CHILD_SUBREAPER)) != 0);
    core.set_timerslack_ns(
        static_cast<uint64_t>(TRY(rs.syscall_checked("prctl(PR_GET_TIMERSLACK)", SYS_prctl, PR_GET_TIMERSLACK))));
    core.set_dumpable(TRY(rs.syscall_checked("prctl(PR_GET_DUMPABLE)", SYS_prctl, PR_GET_DUMPABLE)) != 0);
    log.debug("dump", "pid {}: {} sigactions, {} posix timers, {} seccomp filters", pid, core.sigactions_size(),
              core.posix_timers_size(), core.seccomp_size());
    return {};
}

Status dump_fs_info(pid_t pid, images::FsInfo& fs) {
    fs.set_cwd(TRY(read_link(fmt::format("/proc/{}/cwd", pid))));
    fs.set_root(TRY(read_link(fmt::format("/proc/{}/root", pid))));
    return {};
}

Status dump_mm_fields(pid_t pid, RemoteSyscalls& rs, const ProcStat& stat, images::MmInfo& mm) {
    mm.set_start_code(stat.start_code);
    mm.set_end_code(stat.end_code);
    mm.set_start_data(stat.start_data);
    mm.set_end_data(stat.end_data);
    mm.set_start_brk(stat.start_brk);
    mm.set_brk(static_cast<uint64_t>(TRY(rs.syscall_checked("brk(0)", SYS_brk, 0))));
    mm.set_start_stack(stat.start_stack);
    mm.set_arg_start(stat.arg_start);
    mm.set_arg_end(stat.arg_end);
    mm.set_env_start(stat.env_start);
    mm.set_env_end(stat.env_end);
    for (uint64_t w : TRY(read_auxv(pid)))
        mm.add_auxv(w);
    mm.set_exe_path(TRY(read_link(fmt::format("/proc/{}/exe", pid))));
    return {};
}

}  // namespace criu
