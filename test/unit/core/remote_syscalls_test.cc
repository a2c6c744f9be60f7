#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/syscall.h>

#include <atomic>
#include <random>
#include <thread>

#include "criu/core/proc_parse.h"
#include "criu/core/remote_syscalls.h"
#include "criu/core/seized_process.h"
#include "test_victims.h"

using namespace criu;
using namespace criu::test;

namespace {

// The kernel's struct sigaction for rt_sigaction (not glibc's).
struct KernelSigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

std::vector<std::string> maps_lines(pid_t pid) {
    std::vector<std::string> out;
    auto m = read_maps(pid);
    REQUIRE(m);
    for (auto& e : *m)
        out.push_back(fmt::format("{:x}-{:x} {}{}{}{} {}", e.start, e.end, e.read ? 'r' : '-', e.write ? 'w' : '-',
                                  e.exec ? 'x' : '-', e.shared ? 's' : 'p', e.path));
    return out;
}

}  // namespace

TEST_CASE("remote getpid, mmap, munmap and rt_sigaction run inside the target") {
    Log log(0);
    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    auto before = maps_lines(pid);
    {
        auto sp = SeizedProcess::seize(pid, log);
        REQUIRE(sp);
        Task& t = (*sp)->main_thread();
        user_regs_struct regs0 = *t.regs();
        auto rs = RemoteSyscalls::open(t, log);
        REQUIRE(rs);

        auto p = rs->syscall(SYS_getpid);
        REQUIRE(p);
        CHECK(*p == pid);

        auto addr = rs->syscall_checked("mmap", SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                        static_cast<uint64_t>(-1), 0);
        REQUIRE(addr);
        bool mapped = false;
        auto maps_now = read_maps(pid);
        REQUIRE(maps_now);
        for (auto& e : *maps_now)
            mapped |= e.start == static_cast<uint64_t>(*addr) && e.size() == 8192;
        CHECK(mapped);
        uint64_t v = 0x1234567890abcdefull;
        REQUIRE(t.write_mem(remote_ptr<void>(*addr), &v, sizeof(v)));
        CHECK(t.read_val(remote_ptr<uint64_t>(*addr)).value() == v);
        REQUIRE(rs->syscall_checked("munmap", SYS_munmap, *addr, 8192));

        // Reading SIGUSR1's action through the scratch area: the victim installed its handler.
        REQUIRE(rs->syscall_checked("rt_sigaction", SYS_rt_sigaction, SIGUSR1, 0, rs->scratch().addr(), 8));
        KernelSigaction ka{};
        REQUIRE(rs->read_scratch(0, &ka, sizeof(ka)));
        CHECK(ka.handler == reinterpret_cast<uint64_t>(&victim_usr1_handler));
        CHECK((ka.flags & SA_SIGINFO) != 0);
        CHECK((ka.flags & SA_ONSTACK) != 0);

        // A failing syscall is an error naming the thread and the reason.
        auto bad = rs->syscall_checked("close", SYS_close, 999);
        REQUIRE_FALSE(bad);
        CHECK(bad.error().err() == EBADF);
        CHECK(bad.error().str().find(fmt::format("tid {}", pid)) != std::string::npos);

        REQUIRE(rs->close());
        user_regs_struct regs1 = *t.regs();
        CHECK(regs1.rip == regs0.rip);
        CHECK(regs1.rsp == regs0.rsp);
        CHECK(regs1.rbx == regs0.rbx);
        CHECK(t.signal_mask().value() == ((1ull << (SIGUSR2 - 1)) | (1ull << (SIGWINCH - 1))));
    }
    CHECK(maps_lines(pid) == before);
    CHECK(victim_progresses(pid, sh, 3));
    CHECK(sh->failed == 0);
    kill_and_reap(pid);
}

TEST_CASE("a thread stopped in a restartable syscall restarts it after remote syscalls") {
    Log log(0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t reader = fork();
    if (reader == 0) {
        char c = 0;
        ssize_t n = read(p[0], &c, 1);  // -ERESTARTSYS at the stop
        _exit(n == 1 && c == 'x' ? 0 : 1);
    }
    pid_t sleeper = fork();
    if (sleeper == 0) {
        timespec ts{0, 300 * 1000 * 1000};
        int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);  // -ERESTART_RESTARTBLOCK
        _exit(r == 0 ? 0 : 2);
    }
    usleep(100000);
    for (pid_t pid : {reader, sleeper}) {
        auto sp = SeizedProcess::seize(pid, log);
        REQUIRE(sp);
        Task& t = (*sp)->main_thread();
        CHECK(static_cast<int64_t>(t.initial_regs().orig_rax) >= 0);
        auto rs = RemoteSyscalls::open(t, log);
        REQUIRE(rs);
        CHECK(rs->syscall(SYS_getppid).value() == getpid());
        REQUIRE(rs->close());
    }
    REQUIRE(write(p[1], "x", 1) == 1);
    int st;
    REQUIRE(waitpid(reader, &st, 0) == reader);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    REQUIRE(waitpid(sleeper, &st, 0) == sleeper);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    close(p[0]);
    close(p[1]);
}

TEST_CASE("sibling scopes run syscalls in each thread of a process") {
    Log log(0);
    auto* tids = static_cast<std::atomic<pid_t>*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    pid_t pid = fork();
    if (pid == 0) {
        std::thread a([&] {
            tids[1] = gettid();
            for (;;)
                pause();
        });
        tids[0] = 1;
        for (;;)
            pause();
    }
    while (tids[0].load() == 0 || tids[1].load() == 0)
        usleep(1000);
    {
        auto sp = SeizedProcess::seize(pid, log);
        REQUIRE(sp);
        REQUIRE((*sp)->threads().size() == 2);
        auto owner = RemoteSyscalls::open(*(*sp)->threads()[0], log);
        REQUIRE(owner);
        {
            auto sib = RemoteSyscalls::open_sibling(*(*sp)->threads()[1], *owner, log);
            REQUIRE(sib);
            CHECK(sib->syscall(SYS_gettid).value() == tids[1].load());
            REQUIRE(sib->close());
        }
        CHECK(owner->syscall(SYS_gettid).value() == pid);
        REQUIRE(owner->close());
    }
    // Both threads go back to sleep in pause() (restarted, not failed with a stray errno).
    bool asleep = false;
    for (int i = 0; i < 200 && !asleep; ++i) {
        usleep(5000);
        auto a = read_status(pid, pid);
        auto b = read_status(pid, tids[1].load());
        asleep = a && b && a->state == 'S' && b->state == 'S';
    }
    CHECK(asleep);
    kill_and_reap(pid);
}

TEST_CASE("the target survives its tracer being SIGKILLed in the middle of remote syscalls") {
    VictimShared* sh = make_shared_area();
    pid_t victim = spawn_victim(sh);
    auto* progress = static_cast<std::atomic<uint64_t>*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    std::mt19937 rng(12345);
    constexpr int kRounds = 40;
    for (int round = 0; round < kRounds; ++round) {
        progress->store(0);
        pid_t helper = fork();
        if (helper == 0) {
            Log log(0);
            auto sp = SeizedProcess::seize(victim, log);
            if (!sp)
                _exit(1);
            for (uint64_t i = 1;; ++i) {
                auto rs = RemoteSyscalls::open((*sp)->main_thread(), log);
                if (!rs)
                    _exit(2);
                for (int k = 0; k < 4; ++k) {
                    auto a = rs->syscall(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                                         static_cast<uint64_t>(-1), 0);
                    if (!a || *a < 0)
                        _exit(3);
                    if (!rs->syscall(SYS_munmap, *a, 4096))
                        _exit(4);
                }
                if (!rs->close())
                    _exit(5);
                progress->store(i);
            }
        }
        // Let it get going, then kill it at a random instant of its loop.
        while (progress->load() == 0) {
            int st;
            if (waitpid(helper, &st, WNOHANG) == helper)
                FAIL("helper tracer exited early with status " << st);
            usleep(100);
        }
        usleep(std::uniform_int_distribution<int>(0, 3000)(rng));
        kill(helper, SIGKILL);
        int st;
        REQUIRE(waitpid(helper, &st, 0) == helper);
        INFO("round " << round);
        REQUIRE(victim_progresses(victim, sh, 2));
        REQUIRE(sh->failed == 0);
    }
    auto st = read_status(victim);
    REQUIRE(st);
    CHECK(st->tracer_pid == 0);
    CHECK(st->sig_blk == ((1ull << (SIGUSR2 - 1)) | (1ull << (SIGWINCH - 1))));
    kill_and_reap(victim);
}
