#include <catch2/catch.hpp>

#include <signal.h>
#undef sigmask
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "criu/core/proc_parse.h"
#include "criu/dump/dump.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "proto/pstree.pb.h"
#include "proto/stats.pb.h"

using namespace criu;

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kBufPages = 256;  // 1 MiB: pages 0..191 patterned, 192..255 zero (written)
constexpr size_t kPatternedPages = 192;
constexpr int kWorkers = 3;

// Shared between the test and its multithreaded child (MAP_SHARED).
struct Shared {
    std::atomic<uint64_t> progress[kWorkers + 1];
    std::atomic<int> failed;
    std::atomic<int> ready;
    uint64_t buf;  // address of the child's patterned buffer
};

uint8_t pattern_byte(size_t page, size_t off) { return static_cast<uint8_t>(page * 31 + off * 7 + 1); }

bool check_buffer(const uint8_t* b) {
    for (size_t p = 0; p < kBufPages; ++p)
        for (size_t o = 0; o < kPage; o += 512)
            if (b[p * kPage + o] != (p < kPatternedPages ? pattern_byte(p, o) : 0))
                return false;
    return true;
}

// The child: three workers spin checking the buffer, the main thread checks it between
// sleeps (so it is usually stopped inside clock_nanosleep: a restartable syscall).
[[noreturn]] void child_main(Shared* sh) {
    auto* b = static_cast<uint8_t*>(
        mmap(nullptr, kBufPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t p = 0; p < kBufPages; ++p)
        for (size_t o = 0; o < kPage; ++o)
            b[p * kPage + o] = p < kPatternedPages ? pattern_byte(p, o) : 0;
    sh->buf = reinterpret_cast<uint64_t>(b);
    // A heap allocation, so that [heap] exists.
    volatile char* heap = static_cast<char*>(malloc(4096));
    heap[0] = 1;
    for (int i = 0; i < kWorkers; ++i) {
        std::thread([sh, b, i] {
            for (;;) {
                if (!check_buffer(b))
                    sh->failed = 1;
                sh->progress[i + 1]++;
            }
        }).detach();
    }
    sh->ready = 1;
    for (;;) {
        timespec ts{0, 2 * 1000 * 1000};
        // EINTR is allowed: a dumper SIGKILLed while this thread was parked makes the interrupted
        // sleep return EINTR (the restart_block does not survive rt_sigreturn).
        int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
        if (r != 0 && r != EINTR)
            sh->failed = 2;
        if (!check_buffer(b))
            sh->failed = 3;
        sh->progress[0]++;
    }
}

// Killed and reaped on destruction, so a failed REQUIRE leaves no spinning orphan behind.
struct Child {
    Shared* sh = nullptr;
    pid_t pid = 0;
    Child() = default;
    Child(const Child&) = delete;
    ~Child() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            int st;
            waitpid(pid, &st, 0);
        }
    }
};

void spawn_child(Child& c) {
    auto* sh = static_cast<Shared*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (sh) Shared{};
    pid_t pid = fork();
    if (pid == 0)
        child_main(sh);
    while (sh->ready.load() == 0)
        usleep(1000);
    usleep(20000);
    c.sh = sh;
    c.pid = pid;
}

// Every thread makes progress and the child found nothing wrong. Up to 20 s: on a loaded
// 2-core machine four busy threads may each wait long for a turn.
bool child_healthy(const Child& c) {
    uint64_t start[kWorkers + 1];
    for (int i = 0; i <= kWorkers; ++i)
        start[i] = c.sh->progress[i];
    for (int round = 0; round < 4000; ++round) {
        int st;
        if (waitpid(c.pid, &st, WNOHANG) == c.pid)
            return false;
        bool all = true;
        for (int i = 0; i <= kWorkers; ++i)
            all &= c.sh->progress[i] > start[i] + 2;
        if (all)
            return c.sh->failed == 0;
        usleep(5000);
    }
    return false;
}

void kill_child(Child& c) {
    kill(c.pid, SIGKILL);
    int st;
    waitpid(c.pid, &st, 0);
    c.pid = 0;
}

std::vector<std::string> maps_lines(pid_t pid) {
    std::vector<std::string> out;
    auto m = read_maps(pid);
    REQUIRE(m);
    for (auto& e : *m)
        out.push_back(fmt::format("{:x}-{:x} {}{}{}{} {:x} {}", e.start, e.end, e.read ? 'r' : '-',
                                  e.write ? 'w' : '-', e.exec ? 'x' : '-', e.shared ? 's' : 'p', e.pgoff, e.path));
    return out;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/criu-dump-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

Options dump_options(pid_t pid, const std::string& dir, bool leave_running) {
    Options o;
    o.pid = pid;
    o.images_dir = dir;
    o.work_dir = dir;
    o.leave_running = leave_running;
    return o;
}

}  // namespace

TEST_CASE("dump a multithreaded process with --leave-running and read the images back") {
    Log log(0);
    Child c;
    spawn_child(c);
    auto before = maps_lines(c.pid);
    TempDir dir;
    auto r = run_dump(dump_options(c.pid, dir.path, true), log);
    INFO((r ? std::string("ok") : r.error().str()));
    REQUIRE(r);
    CHECK(child_healthy(c));
    CHECK(maps_lines(c.pid) == before);
    auto st = read_status(c.pid);
    REQUIRE(st);
    CHECK(st->tracer_pid == 0);

    auto d = ImageDir::open(dir.path);
    REQUIRE(d);
    auto inv = d->read_inventory();
    REQUIRE(inv);
    CHECK(inv->root_pid() == c.pid);
    CHECK(inv->page_size() == 4096);
    CHECK(inv->xsave_size() >= 576);
    CHECK(inv->vdso().parts_size() >= 2);

    auto ps = d->open_reader(ImageType::Pstree);
    REQUIRE(ps);
    auto entry = ps->read_one<images::PstreeEntry>();
    REQUIRE(entry);
    REQUIRE(entry->threads_size() == kWorkers + 1);
    CHECK(entry->threads(0) == c.pid);

    auto cr = d->open_reader(ImageType::Core, c.pid);
    REQUIRE(cr);
    auto core = cr->read_one<images::TaskCore>();
    REQUIRE(core);
    REQUIRE(core->threads_size() == kWorkers + 1);
    for (int i = 0; i < core->threads_size(); ++i) {
        CHECK(core->threads(i).tid() == entry->threads(i));
        CHECK(core->threads(i).gpregs().size() == sizeof(user_regs_struct));
        CHECK(core->threads(i).xsave().size() == inv->xsave_size());
        CHECK(core->threads(i).clear_child_tid() != 0);  // glibc sets it for every thread
        CHECK(core->threads(i).rseq().len() >= 20);
    }
    CHECK(core->sigactions_size() == 62);
    CHECK(core->rlimits_size() == RLIM_NLIMITS);
    // The main thread sleeps in clock_nanosleep most of the time: then the image shows the
    // syscall-restart fix-up (-516 -> -EINTR) with the raw values kept apart.
    const auto& t0 = core->threads(0);
    user_regs_struct regs0;
    std::memcpy(&regs0, t0.gpregs().data(), sizeof(regs0));
    if (t0.orig_rax() == SYS_clock_nanosleep && t0.raw_rax() == -516)
        CHECK(static_cast<int64_t>(regs0.rax) == -EINTR);
    CHECK(static_cast<int64_t>(regs0.orig_rax) == -1);

    auto mr = d->open_reader(ImageType::Mm, c.pid);
    REQUIRE(mr);
    auto mm = mr->read_one<images::MmInfo>();
    REQUIRE(mm);
    bool heap = false, stack = false, vdso = false;
    for (const auto& v : mm->vmas()) {
        heap |= v.kind() == images::VMA_HEAP;
        stack |= v.kind() == images::VMA_STACK;
        vdso |= v.kind() == images::VMA_VDSO;
    }
    CHECK(heap);
    CHECK(stack);
    CHECK(vdso);
    CHECK(mm->brk() >= mm->start_brk());
    CHECK(!mm->exe_path().empty());
    CHECK(mm->auxv_size() >= 2);

    auto pr = PageReader::open(*d, c.pid, false);
    REQUIRE(pr);
    std::vector<uint8_t> got(kPatternedPages * kPage);
    REQUIRE(pr->read_range(c.sh->buf, kPatternedPages, got.data()));
    bool same = true;
    for (size_t p = 0; p < kPatternedPages; ++p)
        for (size_t o = 0; o < kPage; ++o)
            same &= got[p * kPage + o] == pattern_byte(p, o);
    CHECK(same);
    // The written-but-zero tail of the buffer is left out (absent anon pages are zero).
    std::vector<uint8_t> zero(kPage);
    CHECK_FALSE(pr->read_range(c.sh->buf + kPatternedPages * kPage, 1, zero.data()));

    auto sr = d->open_reader(ImageType::DumpStats);
    REQUIRE(sr);
    auto stats = sr->read_one<images::DumpStats>();
    REQUIRE(stats);
    CHECK(stats->threads() == kWorkers + 1);
    CHECK(stats->pages_written() >= kPatternedPages);
    CHECK(stats->pages_skipped_zero() >= kBufPages - kPatternedPages);
    CHECK(stats->frozen_time_us() > 0);

    // A second dump of the same process works too, compressed this time.
    TempDir dir2;
    Options o2 = dump_options(c.pid, dir2.path, true);
    o2.compress = true;
    auto r2 = run_dump(o2, log);
    INFO((r2 ? std::string("ok") : r2.error().str()));
    REQUIRE(r2);
    auto d2 = ImageDir::open(dir2.path);
    REQUIRE(d2);
    auto pr2 = PageReader::open(*d2, c.pid, false);
    REQUIRE(pr2);
    std::vector<uint8_t> got2(kPatternedPages * kPage);
    REQUIRE(pr2->read_range(c.sh->buf, kPatternedPages, got2.data()));
    CHECK(got2 == got);
    CHECK(child_healthy(c));
    CHECK(maps_lines(c.pid) == before);
    kill_child(c);
}

TEST_CASE("without --leave-running the dumped process is killed") {
    Log log(0);
    Child c;
    spawn_child(c);
    TempDir dir;
    auto r = run_dump(dump_options(c.pid, dir.path, false), log);
    INFO((r ? std::string("ok") : r.error().str()));
    REQUIRE(r);
    int st = 0;
    REQUIRE(waitpid(c.pid, &st, 0) == c.pid);
    c.pid = 0;
    CHECK(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
    CHECK(std::filesystem::exists(dir.path + "/inventory.img"));
}

TEST_CASE("a fault in any phase leaves the process running intact and no inventory") {
    Log log(0);
    Child c;
    spawn_child(c);
    auto before = maps_lines(c.pid);
    for (const char* phase : kDumpPhases) {
        INFO("phase " << phase);
        TempDir dir;
        setenv("CRIU_FAULT_INJECT", phase, 1);
        auto r = run_dump(dump_options(c.pid, dir.path, false), log);
        unsetenv("CRIU_FAULT_INJECT");
        REQUIRE_FALSE(r);
        CHECK(r.error().str().find(fmt::format("phase '{}'", phase)) != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(dir.path + "/inventory.img"));
        CHECK(child_healthy(c));
        CHECK(maps_lines(c.pid) == before);
        auto st = read_status(c.pid);
        REQUIRE(st);
        CHECK(st->tracer_pid == 0);
    }
    // And after all that, a real dump still works.
    TempDir dir;
    REQUIRE(run_dump(dump_options(c.pid, dir.path, true), log));
    CHECK(child_healthy(c));
    kill_child(c);
}

TEST_CASE("SIGINT during a dump makes the next phase fail and roll back") {
    Log log(0);
    InterruptGuard guard;
    Options o;
    REQUIRE(raise(SIGINT) == 0);  // the guard's handler only raises the flag
    CHECK(InterruptGuard::pending() == SIGINT);
    TempDir dir;
    auto id = ImageDir::create(dir.path);
    REQUIRE(id);
    DumpContext ctx(o, log, std::move(*id), kfc::KernelFeatures::run_all());
    auto r = ctx.checkpoint("mm");
    REQUIRE_FALSE(r);
    CHECK(r.error().err() == EINTR);
    CHECK(r.error().str().find("signal 2") != std::string::npos);
    InterruptGuard::reset();
}

TEST_CASE("dry run reports blockers without stopping the process") {
    Log log(0);
    Child c;
    spawn_child(c);
    TempDir dir;
    Options o = dump_options(c.pid, dir.path + "/never-created", false);
    o.dry_run = true;
    REQUIRE(run_dump(o, log));
    CHECK_FALSE(std::filesystem::exists(dir.path + "/never-created"));
    CHECK(child_healthy(c));
    pid_t old_pid = c.pid;
    kill_child(c);

    Options gone = dump_options(old_pid, dir.path, false);
    gone.dry_run = true;
    auto r = run_dump(gone, log);
    REQUIRE_FALSE(r);
    CHECK(r.error().err() == ESRCH);
}

TEST_CASE("a process with a seccomp filter that forbids an injected syscall survives its dump") {
    Log log(0);
    auto* ready = static_cast<std::atomic<int>*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    pid_t pid = fork();
    if (pid == 0) {
        // Kill the process on getitimer(), which the dumper runs inside it: only
        // PTRACE_O_SUSPEND_SECCOMP lets the dump through.
        sock_filter prog[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getitimer, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog fp{static_cast<unsigned short>(sizeof(prog) / sizeof(prog[0])), prog};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp) != 0)
            _exit(1);
        ready->store(1);
        for (;;)
            pause();
    }
    while (ready->load() == 0)
        usleep(1000);
    TempDir dir;
    auto r = run_dump(dump_options(pid, dir.path, true), log);
    INFO((r ? std::string("ok") : r.error().str()));
    REQUIRE(r);
    auto d = ImageDir::open(dir.path);
    REQUIRE(d);
    auto core = d->open_reader(ImageType::Core, pid)->read_one<images::TaskCore>();
    REQUIRE(core);
    CHECK(core->no_new_privs());
    REQUIRE(core->seccomp_size() == 1);
    CHECK(core->seccomp(0).bpf().size() == 4 * sizeof(sock_filter));
    usleep(50000);
    int st;
    CHECK(waitpid(pid, &st, WNOHANG) == 0);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

TEST_CASE("the dumped process survives its dumper being SIGKILLed or interrupted at random moments") {
    Child c;
    spawn_child(c);
    std::srand(4242);
    constexpr int kRounds = 24;
    int interrupted_cleanly = 0;
    for (int round = 0; round < kRounds; ++round) {
        INFO("round " << round);
        TempDir dir;
        // A SIGKILL may leave the small code area behind (harmless, KERNEL-NOTES): compare each
        // round with the state just before it.
        auto before = maps_lines(c.pid);
        bool use_sigint = round % 2 == 1;
        // Catch2's own SIGINT handler is not async-signal-safe: in the helper, a SIGINT outside
        // run_dump must simply kill it, as it would kill a real criu there. Blocked across the
        // fork so that none lands before the default action is back.
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigprocmask(SIG_BLOCK, &block, &old);
        pid_t dumper = fork();
        if (dumper == 0) {
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            sigprocmask(SIG_SETMASK, &old, nullptr);
            Log log(0);
            for (;;) {
                auto r = run_dump(dump_options(c.pid, dir.path, true), log);
                if (!r)
                    _exit(r.error().err() == EINTR ? 3 : 4);
                // A SIGINT after the last phase finds the dump complete (and the process resumed):
                // run_dump succeeds with the signal noted, and the next run_dump would start afresh
                // and forget it, looping until ctest's timeout. Stop like a real criu would.
                if (InterruptGuard::pending())
                    _exit(3);
            }
        }
        sigprocmask(SIG_SETMASK, &old, nullptr);
        usleep(1000 + std::rand() % 40000);
        kill(dumper, use_sigint ? SIGINT : SIGKILL);
        int st = 0;
        REQUIRE(waitpid(dumper, &st, 0) == dumper);
        if (use_sigint) {
            // Either the handler was in place (clean rollback, exit 3) or not yet (killed by it).
            CHECK(((WIFEXITED(st) && WEXITSTATUS(st) == 3) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGINT)));
            if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
                ++interrupted_cleanly;
                // A clean rollback leaves nothing behind.
                CHECK(maps_lines(c.pid) == before);
            }
        }
        REQUIRE(child_healthy(c));
        auto s = read_status(c.pid);
        REQUIRE(s);
        CHECK(s->tracer_pid == 0);
    }
    CHECK(interrupted_cleanly > 0);
    kill_child(c);
}

TEST_CASE("pre-dump then dump with --prev-images-dir records unchanged pages as in the parent") {
    Log log(0);
    Child c;
    spawn_child(c);
    TempDir root;
    std::string pre_dir = root.path + "/pre";
    std::string full_dir = root.path + "/full";
    Options pre = dump_options(c.pid, pre_dir, false);
    DumpHooks hooks;
    images::DumpStats pre_stats;
    hooks.stats_out = &pre_stats;
    auto r1 = run_pre_dump(pre, log, hooks);
    INFO((r1 ? std::string("ok") : r1.error().str()));
    REQUIRE(r1);
    CHECK(child_healthy(c));  // a pre-dump always leaves the process running
    // The stats come back to the caller (a migration's rounds), the copy counted outside the
    // frozen part (which only starts the tracking).
    CHECK(pre_stats.pages_written() >= kPatternedPages);
    CHECK(pre_stats.frozen_time_us() <= pre_stats.total_time_us());
    auto dp = ImageDir::open(pre_dir);
    REQUIRE(dp);
    auto pinv = dp->read_inventory();
    REQUIRE(pinv);
    CHECK(pinv->pre_dump());

    Options full = dump_options(c.pid, full_dir, true);
    full.prev_images_dir = "../pre";  // relative to the images directory, as in CRIU
    auto r2 = run_dump(full, log);
    INFO((r2 ? std::string("ok") : r2.error().str()));
    REQUIRE(r2);
    auto d = ImageDir::open(full_dir);
    REQUIRE(d);
    auto inv = d->read_inventory();
    REQUIRE(inv);
    CHECK_FALSE(inv->pre_dump());
    CHECK(inv->parent_dir() == "../pre");
    auto stats = d->open_reader(ImageType::DumpStats)->read_one<images::DumpStats>();
    REQUIRE(stats);
    CHECK(stats->pages_skipped_parent() >= kPatternedPages);
    CHECK(stats->pages_written() < stats->pages_skipped_parent());
    // The pre-dump left a tracking agent behind; the dump asked it instead of hashing.
    CHECK(stats->dirty_tracking() == "uffd-wp");
    CHECK(stats->tracking_fallback().empty());
    CHECK(inv->dirty_tracking() == "uffd-wp");

    // Through the chain, the buffer reads back whole.
    auto pr = PageReader::open(*d, c.pid, true);
    REQUIRE(pr);
    CHECK(pr->count_pages(images::PE_PARENT) >= kPatternedPages);
    std::vector<uint8_t> got(kPatternedPages * kPage);
    REQUIRE(pr->read_range(c.sh->buf, kPatternedPages, got.data()));
    bool same = true;
    for (size_t p = 0; p < kPatternedPages; ++p)
        for (size_t o = 0; o < kPage; ++o)
            same &= got[p * kPage + o] == pattern_byte(p, o);
    CHECK(same);
    CHECK(child_healthy(c));
}
