#include "criu/core/remote_syscalls.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "criu/core/assert.h"
#include "criu/core/proc_parse.h"
#include "criu/core/syscall_restart.h"

namespace criu {

namespace {

// syscall; mov $15,%eax (rt_sigreturn); syscall; ud2.
// The tracer takes each result at the first syscall's exit stop and never lets the thread reach
// the second one; only a thread whose tracer died runs on into rt_sigreturn.
constexpr uint8_t kTrampoline[] = {0x0f, 0x05, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b};
constexpr uint64_t kSigreturnOffset = 2;
// x86-64 ABI: the 128 bytes below rsp may hold live data of a leaf function.
constexpr uint64_t kRedZone = 128;

// The kernel's x86-64 rt_sigframe (arch/x86/include/asm/sigframe.h, uapi sigcontext.h). Defined
// here because <asm/sigcontext.h> clashes with glibc's <signal.h>.
struct KSigcontext {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t di, si, bp, bx, dx, ax, cx, sp, ip, flags;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2;
    uint64_t fpstate;
    uint64_t reserved1[8];
};
struct KStack {
    uint64_t sp;
    int32_t flags;
    int32_t pad;
    uint64_t size;
};
struct KUcontext {
    uint64_t flags;
    uint64_t link;
    KStack stack;
    KSigcontext mcontext;
    uint64_t sigmask;  // the kernel's sigset_t is 64 bits on x86-64
};
struct KRtSigframe {
    uint64_t pretcode;
    KUcontext uc;
    uint8_t info[128];
};
static_assert(sizeof(KSigcontext) == 256);
static_assert(offsetof(KRtSigframe, uc) + offsetof(KUcontext, mcontext) == 48);
static_assert(sizeof(KRtSigframe) == 440);

constexpr uint64_t kUcFpXstate = 1;
constexpr uint64_t kUcSigcontextSs = 2;
constexpr uint64_t kUcStrictRestoreSs = 4;
constexpr uint32_t kFpXstateMagic1 = 0x46505853;
constexpr uint32_t kFpXstateMagic2 = 0x46505845;
constexpr size_t kSwReservedOffset = 464;  // struct _fpx_sw_bytes inside the FXSAVE area

struct FpxSwBytes {
    uint32_t magic1;
    uint32_t extended_size;
    uint64_t xfeatures;
    uint32_t xstate_size;
    uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

// An ss_flags value with an invalid mode: rt_sigreturn's restore_altstack() then leaves the
// thread's sigaltstack alone (do_sigaltstack() returns EINVAL before changing anything and the
// error is squashed). We cannot know the real altstack without running code first, and a wrong
// one would silently replace it.
constexpr int32_t kAltstackLeaveAlone = 4;

constexpr uint64_t kEflagsTF = 0x100;
constexpr uint64_t kEflagsDF = 0x400;

}  // namespace

RemoteSyscalls::RemoteSyscalls(RemoteSyscalls&& o) noexcept
    : task_(o.task_),
      log_(o.log_),
      owner_(o.owner_),
      open_(o.open_),
      saved_regs_(o.saved_regs_),
      saved_mask_(o.saved_mask_),
      frame_rsp_(o.frame_rsp_),
      parked_(o.parked_),
      area_(o.area_),
      text_spot_(o.text_spot_),
      text_poked_(o.text_poked_),
      mask_blocked_(o.mask_blocked_),
      regs_touched_(o.regs_touched_),
      ran_(o.ran_) {
    std::memcpy(text_orig_, o.text_orig_, sizeof(text_orig_));
    o.open_ = false;
}

RemoteSyscalls::~RemoteSyscalls() {
    if (!open_)
        return;
    auto r = close();
    if (!r)
        log_->warn("remote", "{}", r.error().str());
}

Expected<RemoteSyscalls> RemoteSyscalls::open(Task& task, Log& log) {
    RemoteSyscalls rs(task, log, true);
    Status r = rs.open_common();
    if (r)
        r = rs.map_area();
    if (!r) {
        auto c = rs.close();
        if (!c)
            log.warn("remote", "while undoing a failed remote-syscall setup: {}", c.error().str());
        return std::unexpected(std::move(r.error()));
    }
    log.debug("remote", "tid {}: remote area at {}", task.tid(), rs.area_);
    return rs;
}

Expected<RemoteSyscalls> RemoteSyscalls::open_sibling(Task& task, const RemoteSyscalls& owner, Log& log) {
    CRIU_ASSERT(owner.open_ && owner.area_ && task.pid() == owner.task_->pid());
    RemoteSyscalls rs(task, log, false);
    Status r = rs.open_common();
    if (r) {
        rs.area_ = owner.area_;
        r = rs.park_at(rs.area_);
    }
    if (r) {
        r = task.set_signal_mask(~0ull);
        rs.mask_blocked_ = static_cast<bool>(r);
    }
    if (!r) {
        auto c = rs.close();
        if (!c)
            log.warn("remote", "while undoing a failed remote-syscall setup: {}", c.error().str());
        return std::unexpected(std::move(r.error()));
    }
    return rs;
}

Status RemoteSyscalls::open_common() {
    CRIU_ASSERT(task_->stopped());
    // rt_sigreturn with user shadow stacks expects a restore token we cannot forge.
    ProcStatus st = TRY(read_status(task_->pid(), task_->tid()));
    if (st.x86_thread_features.find("shstk") != std::string::npos)
        return failf(ENOTSUP, "tid {} of pid {} uses a CET shadow stack; running code in it is not supported",
                     task_->tid(), task_->pid());
    saved_regs_ = TRY(task_->regs());
    saved_mask_ = TRY(task_->signal_mask());
    TRY_VOID(build_frame());
    open_ = true;
    return {};
}

Status RemoteSyscalls::build_frame() {
    std::vector<uint8_t> xs = TRY(task_->xstate());
    if (xs.size() < kSwReservedOffset + sizeof(FpxSwBytes))
        return failf(EINVAL, "tid {}: XSAVE buffer of {} bytes is too small", task_->tid(), xs.size());
    // ptrace puts XCR0 in the first word of sw_reserved; a signal frame needs the
    // _fpx_sw_bytes there and FP_XSTATE_MAGIC2 right after the state, or the kernel restores
    // only the legacy FXSAVE part (KERNEL-NOTES section 5, step 9).
    uint64_t xcr0 = 0;
    std::memcpy(&xcr0, xs.data() + kSwReservedOffset, sizeof(xcr0));
    FpxSwBytes sw{};
    sw.magic1 = kFpXstateMagic1;
    sw.extended_size = static_cast<uint32_t>(xs.size() + sizeof(uint32_t));
    sw.xfeatures = xcr0;
    sw.xstate_size = static_cast<uint32_t>(xs.size());
    std::memcpy(xs.data() + kSwReservedOffset, &sw, sizeof(sw));
    size_t xsize = xs.size();
    xs.resize(xsize + sizeof(uint32_t));
    std::memcpy(xs.data() + xsize, &kFpXstateMagic2, sizeof(uint32_t));

    uint64_t below = saved_regs_.rsp - kRedZone;
    uint64_t fpstate = (below - xs.size()) & ~63ull;  // XRSTOR needs 64-byte alignment
    uint64_t frame = (fpstate - sizeof(KRtSigframe)) & ~15ull;

    // The context the thread goes back to if we die: as the image would have it (a restartable
    // syscall is rewound; -516 becomes -EINTR since rt_sigreturn drops the restart_block).
    user_regs_struct r = restart_fixup(saved_regs_, RestartMode::Image);
    KRtSigframe f{};
    f.uc.flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
    f.uc.stack.flags = kAltstackLeaveAlone;
    KSigcontext& sc = f.uc.mcontext;
    sc.r8 = r.r8;
    sc.r9 = r.r9;
    sc.r10 = r.r10;
    sc.r11 = r.r11;
    sc.r12 = r.r12;
    sc.r13 = r.r13;
    sc.r14 = r.r14;
    sc.r15 = r.r15;
    sc.di = r.rdi;
    sc.si = r.rsi;
    sc.bp = r.rbp;
    sc.bx = r.rbx;
    sc.dx = r.rdx;
    sc.ax = r.rax;
    sc.cx = r.rcx;
    sc.sp = r.rsp;
    sc.ip = r.rip;
    sc.flags = r.eflags;
    sc.cs = static_cast<uint16_t>(r.cs);
    sc.ss = static_cast<uint16_t>(r.ss);
    sc.fpstate = fpstate;
    f.uc.sigmask = saved_mask_;

    std::vector<uint8_t> buf(fpstate + xs.size() - frame, 0);
    std::memcpy(buf.data(), &f, sizeof(f));
    std::memcpy(buf.data() + (fpstate - frame), xs.data(), xs.size());
    auto w = task_->write_mem(remote_ptr<void>(frame), buf.data(), buf.size());
    if (!w)
        return std::unexpected(std::move(w.error().add_context(fmt::format(
            "tid {}: no room for a signal frame below its stack pointer {:#x}", task_->tid(), saved_regs_.rsp))));

    frame_rsp_ = remote_ptr<void>(frame + 8);  // rt_sigreturn finds the frame at rsp - 8
    parked_ = saved_regs_;
    parked_.rsp = frame_rsp_.addr();
    parked_.orig_rax = static_cast<uint64_t>(-1);  // no restart fix-up when resuming from the stop
    parked_.eflags &= ~(kEflagsTF | kEflagsDF);
    return {};
}

Expected<remote_ptr<void>> RemoteSyscalls::pick_text_spot() {
    std::vector<MapsEntry> maps = TRY(read_maps(task_->pid()));
    for (const auto& m : maps) {
        // The first executable file mapping is the program's ELF header or its .init: code that
        // never runs again once the process is up, the least harmful bytes to borrow.
        if (m.exec && !m.shared && !m.path.empty() && m.path[0] == '/' && m.size() >= sizeof(text_orig_))
            return remote_ptr<void>(m.start);
    }
    return failf(ENOEXEC, "pid {}: no executable file mapping to start remote code from", task_->pid());
}

Status RemoteSyscalls::poke_text() {
    TRY_VOID(task_->read_mem_force(text_spot_, text_orig_, sizeof(kTrampoline)));
    text_poked_ = true;
    return task_->write_mem_force(text_spot_, kTrampoline, sizeof(kTrampoline));
}

Status RemoteSyscalls::unpoke_text() {
    TRY_VOID(task_->write_mem_force(text_spot_, text_orig_, sizeof(kTrampoline)));
    text_poked_ = false;
    return {};
}

Status RemoteSyscalls::park_at(remote_ptr<void> code) {
    user_regs_struct r = parked_;
    r.rip = (code + kSigreturnOffset).addr();
    task_->set_regs(r);
    regs_touched_ = true;
    return task_->flush_regs();
}

Status RemoteSyscalls::map_area() {
    text_spot_ = TRY(pick_text_spot());
    TRY_VOID(poke_text());
    // Park first, then block signals: from here a death ends in rt_sigreturn, which puts back
    // the original mask along with everything else.
    TRY_VOID(park_at(text_spot_));
    TRY_VOID(task_->set_signal_mask(~0ull));
    mask_blocked_ = true;
    uint64_t args[6] = {0, kAreaSize, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0};
    long addr = TRY(run_from(text_spot_, SYS_mmap, args));
    if (addr < 0 && addr >= -4095)
        return failf(static_cast<int>(-addr), "tid {} of pid {}: remote mmap of the code area", task_->tid(),
                     task_->pid());
    area_ = remote_ptr<void>(static_cast<uint64_t>(addr));
    // The area is not writable for the target (W^X policies such as MDWE stay satisfied);
    // /proc/PID/mem writes through the protection.
    TRY_VOID(task_->write_mem_force(area_, kTrampoline, sizeof(kTrampoline)));
    // Move off the borrowed text before putting its bytes back.
    TRY_VOID(park_at(area_));
    TRY_VOID(unpoke_text());
    TRY(syscall_checked("mprotect", SYS_mprotect, scratch().addr(), scratch_size(), PROT_READ | PROT_WRITE));
    return {};
}

Expected<long> RemoteSyscalls::run_from(remote_ptr<void> code, long nr, const uint64_t (&a)[6]) {
    user_regs_struct r = parked_;
    r.rip = code.addr();
    r.rax = static_cast<uint64_t>(nr);
    r.rdi = a[0];
    r.rsi = a[1];
    r.rdx = a[2];
    r.r10 = a[3];
    r.r8 = a[4];
    r.r9 = a[5];
    task_->set_regs(r);
    regs_touched_ = true;
    ran_ = true;
    StopKind k = TRY(task_->syscall_step());
    if (k != StopKind::SyscallEnter)
        return failf(EPROTO, "tid {} of pid {}: expected a syscall-entry stop for syscall {}", task_->tid(),
                     task_->pid(), nr);
    k = TRY(task_->syscall_step());
    if (k != StopKind::SyscallExit)
        return failf(EPROTO, "tid {} of pid {}: expected a syscall-exit stop for syscall {}", task_->tid(),
                     task_->pid(), nr);
    // The thread now sits at code + 2, i.e. right before rt_sigreturn: parked again.
    user_regs_struct out = TRY(task_->regs());
    return static_cast<long>(out.rax);
}

Expected<long> RemoteSyscalls::syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                       uint64_t a6) {
    CRIU_ASSERT(open_ && area_);
    uint64_t args[6] = {a1, a2, a3, a4, a5, a6};
    return run_from(area_, nr, args);
}

Expected<long> RemoteSyscalls::syscall_checked(const char* name, long nr, uint64_t a1, uint64_t a2, uint64_t a3,
                                               uint64_t a4, uint64_t a5, uint64_t a6) {
    long r = TRY(syscall(nr, a1, a2, a3, a4, a5, a6));
    if (r < 0 && r >= -4095)
        return failf(static_cast<int>(-r), "tid {} of pid {}: {} (run inside the process)", task_->tid(),
                     task_->pid(), name);
    return r;
}

Status RemoteSyscalls::write_scratch(size_t off, const void* buf, size_t len) {
    CRIU_ASSERT(area_ && off <= scratch_size() && len <= scratch_size() - off);
    return task_->write_mem(scratch() + off, buf, len);
}

Status RemoteSyscalls::read_scratch(size_t off, void* buf, size_t len) {
    CRIU_ASSERT(area_ && off <= scratch_size() && len <= scratch_size() - off);
    return task_->read_mem(scratch() + off, buf, len);
}

Status RemoteSyscalls::unmap_area() {
    // munmap cannot run from the area itself: the thread would return into a hole. Borrow the
    // text again for this one syscall; the thread stays parked over its frame meanwhile.
    if (!text_spot_)
        text_spot_ = TRY(pick_text_spot());
    TRY_VOID(poke_text());
    uint64_t args[6] = {area_.addr(), kAreaSize, 0, 0, 0, 0};
    long r = TRY(run_from(text_spot_, SYS_munmap, args));
    if (r < 0)
        return failf(static_cast<int>(-r), "tid {} of pid {}: remote munmap of the code area at {}",
                     task_->tid(), task_->pid(), area_);
    area_ = remote_ptr<void>();
    return {};
}

Status RemoteSyscalls::close() {
    if (!open_)
        return {};
    open_ = false;
    if (!task_->alive())
        return {};
    Status first;
    auto note = [&](Status s) {
        if (!s && first)
            first = std::move(s);
    };
    if (owner_ && area_)
        note(unmap_area());
    // Each step below keeps the thread able to run on by itself: the mask goes back while the
    // thread is still parked over its frame, the registers go back before the text does.
    if (mask_blocked_) {
        note(task_->set_signal_mask(saved_mask_));
        mask_blocked_ = false;
    }
    if (regs_touched_) {
        // After a syscall ran the thread sits at a syscall-exit stop, from where the kernel will
        // not rewind an interrupted syscall: do it as it would have (syscall_restart.h).
        task_->set_regs(ran_ ? restart_fixup(saved_regs_, RestartMode::Kernel) : saved_regs_);
        note(task_->flush_regs());
        regs_touched_ = false;
    }
    if (text_poked_)
        note(unpoke_text());
    if (!first)
        first.error().add_context(fmt::format("while ending remote syscalls in tid {} of pid {}", task_->tid(),
                                              task_->pid()));
    return first;
}

}  // namespace criu
