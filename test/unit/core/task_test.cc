#include <catch2/catch.hpp>

#include <pthread.h>
#include <sys/syscall.h>

#include <atomic>
#include <thread>

#include "criu/core/proc_parse.h"
#include "criu/core/seized_process.h"
#include "criu/core/task.h"
#include "test_victims.h"

using namespace criu;
using namespace criu::test;

TEST_CASE("seize a spinning process, read its state, resume it intact") {
    Log log(0);
    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    {
        auto sp = SeizedProcess::seize(pid, log);
        REQUIRE(sp);
        REQUIRE((*sp)->threads().size() == 1);
        Task& t = (*sp)->main_thread();
        CHECK(t.stopped());
        uint64_t c1 = sh->counter;
        usleep(20000);
        CHECK(sh->counter == c1);  // really stopped

        auto regs = t.regs();
        REQUIRE(regs);
        CHECK(regs->rip != 0);
        auto xs = t.xstate();
        REQUIRE(xs);
        CHECK(xs->size() >= 576);
        auto mask = t.signal_mask();
        REQUIRE(mask);
        CHECK((*mask & (1ull << (SIGUSR2 - 1))) != 0);
        auto pend = t.peek_siginfo(false);
        REQUIRE(pend);
        CHECK(pend->empty());
        auto rseq = t.rseq_config();
        REQUIRE(rseq);
        CHECK(rseq->len >= 20);  // glibc 2.35+ registers rseq for every thread
        auto st = read_status(pid);
        REQUIRE(st);
        CHECK(st->tracer_pid == getpid());
    }
    auto st = read_status(pid);
    REQUIRE(st);
    CHECK(st->tracer_pid == 0);
    CHECK(victim_progresses(pid, sh));
    CHECK(sh->failed == 0);
    kill_and_reap(pid);
}

TEST_CASE("pending signals are visible per thread and shared, and stay queued") {
    Log log(0);
    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    // SIGUSR2 is blocked in the victim: a process-directed one stays in the shared queue, a
    // thread-directed one in the thread's own queue.
    union sigval v;
    v.sival_int = 1234;
    REQUIRE(sigqueue(pid, SIGUSR2, v) == 0);
    REQUIRE(syscall(SYS_tgkill, pid, pid, SIGWINCH) == 0);
    {
        auto sp = SeizedProcess::seize(pid, log);
        REQUIRE(sp);
        Task& t = (*sp)->main_thread();
        auto shared = t.peek_siginfo(true);
        REQUIRE(shared);
        REQUIRE(shared->size() == 1);
        CHECK((*shared)[0].si_signo == SIGUSR2);
        CHECK((*shared)[0].si_value.sival_int == 1234);
        auto own = t.peek_siginfo(false);
        REQUIRE(own);
        REQUIRE(own->size() == 1);
        CHECK((*own)[0].si_signo == SIGWINCH);
    }
    auto st = read_status(pid);
    REQUIRE(st);
    CHECK(st->shd_pnd == (1ull << (SIGUSR2 - 1)));
    CHECK(victim_progresses(pid, sh));
    kill_and_reap(pid);
}

TEST_CASE("every thread is seized, including ones born during the seize") {
    Log log(0);
    auto* flag = static_cast<std::atomic<int>*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    pid_t pid = fork();
    if (pid == 0) {
        // Keeps creating short-lived threads while two long-lived ones spin.
        std::thread a([] { for (;;) asm volatile("" ::: "memory"); });
        std::thread b([] { for (;;) usleep(100); });
        flag->store(1);
        for (;;) {
            std::thread c([] { usleep(50); });
            c.join();
        }
    }
    // Killed and reaped however the test ends: a thread factory left behind would hold ctest's
    // output pipe open until the test's timeout.
    struct Reap {
        pid_t pid;
        ~Reap() { kill_and_reap(pid); }
    } reap{pid};
    while (flag->load() == 0)
        usleep(1000);
    for (int round = 0; round < 10; ++round) {
        auto sp = SeizedProcess::seize(pid, log);
        INFO((sp ? std::string("seized") : sp.error().str()));
        REQUIRE(sp);
        auto tids = list_tasks(pid);
        REQUIRE(tids);
        // Everything alive now is seized (a thread that exited during the seize is not listed).
        for (pid_t tid : *tids) {
            bool found = false;
            for (auto& t : (*sp)->threads())
                found |= t->tid() == tid;
            CHECK(found);
        }
        CHECK((*sp)->threads().front()->tid() == pid);
        CHECK((*sp)->threads().size() >= 3);
    }
    auto st = read_status(pid);
    REQUIRE(st);
    CHECK(st->tracer_pid == 0);
    CHECK(st->state != 'Z');
}

TEST_CASE("a process that dies while seized gives ESRCH with a clear message") {
    Log log(0);
    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    auto sp = SeizedProcess::seize(pid, log);
    REQUIRE(sp);
    kill(pid, SIGKILL);
    Task& t = (*sp)->main_thread();
    // The stop is broken by SIGKILL: the next ptrace operation or wait reports the death.
    auto r = t.syscall_step();
    REQUIRE_FALSE(r);
    CHECK(r.error().err() == ESRCH);
    CHECK(r.error().str().find(fmt::format("pid {}", pid)) != std::string::npos);
    sp->reset();
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
}

TEST_CASE("seizing refuses zombies, threads and processes traced by someone else") {
    Log log(0);
    pid_t z = fork();
    if (z == 0)
        _exit(0);
    usleep(50000);
    auto r = SeizedProcess::seize(z, log);
    REQUIRE_FALSE(r);
    CHECK(r.error().str().find("zombie") != std::string::npos);
    int st;
    waitpid(z, &st, 0);

    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    {
        auto first = SeizedProcess::seize(pid, log);
        REQUIRE(first);
        auto second = SeizedProcess::seize(pid, log);
        REQUIRE_FALSE(second);
        CHECK(second.error().err() == EBUSY);
    }
    CHECK(victim_progresses(pid, sh));
    kill_and_reap(pid);
}

TEST_CASE("kill() ends a seized process") {
    Log log(0);
    VictimShared* sh = make_shared_area();
    pid_t pid = spawn_victim(sh);
    auto sp = SeizedProcess::seize(pid, log);
    REQUIRE(sp);
    REQUIRE((*sp)->kill());
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
}

TEST_CASE("a thread that cannot stop (vfork parent, state D) times out with its state named") {
    Log log(0);
    pid_t pid = fork();
    if (pid == 0) {
        pid_t v = vfork();
        if (v == 0) {
            for (;;)
                pause();
        }
        _exit(0);
    }
    usleep(100000);
    auto kids = read_children(pid, pid);
    REQUIRE(kids);
    REQUIRE(kids->size() == 1);
    {
        auto t = Task::seize(pid, pid, log, false);
        REQUIRE(t);
        REQUIRE((*t)->interrupt());
        auto r = (*t)->wait_for_stop(std::chrono::milliseconds(200));
        REQUIRE_FALSE(r);
        CHECK(r.error().err() == ETIMEDOUT);
        CHECK(r.error().str().find("state D") != std::string::npos);
        // Once the vfork child is gone the parent stops, and the Task detaches cleanly.
        kill((*kids)[0], SIGKILL);
    }
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    waitpid((*kids)[0], &st, 0);
}
