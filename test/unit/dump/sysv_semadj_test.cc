// Semaphore undo adjustments: hostile TaskCore.sem_undo records refused by name, and the restore
// half's semops give a process exactly the recorded adjustments without moving the values (the
// kernel applies them when it exits). The dump half needs a seized process: e2e.sysv_semadj.
#include <catch2/catch.hpp>

#include <sched.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "criu/ipc/sysv_semadj.h"

using namespace criu;

namespace {

void add(images::TaskCore& core, int semid, uint32_t num, int adj) {
    auto* e = core.add_sem_undo();
    e->set_semid(semid);
    e->set_semnum(num);
    e->set_adj(adj);
}

std::string refusal(const images::TaskCore& core) {
    Status st = validate_semadj(core);
    return st ? std::string() : st.error().str();
}

}  // namespace

TEST_CASE("semadj: hostile records are refused naming pid, set and semaphore") {
    images::TaskCore core;
    core.set_pid(4242);
    add(core, 3, 1, 17);
    add(core, 3, 2, -32768);
    add(core, 5, 0, 32767);
    CHECK(refusal(core).empty());

    images::TaskCore bad = core;
    add(bad, -1, 0, 1);
    CHECK(refusal(bad).find("pid 4242: semaphore undo adjustment for set -1 number 0") != std::string::npos);
    bad = core;
    add(bad, 3, 70000, 1);
    CHECK(refusal(bad).find("set 3 number 70000") != std::string::npos);
    bad = core;
    add(bad, 7, 0, 40000);
    CHECK(refusal(bad).find("set 7 number 0: undo adjustment 40000") != std::string::npos);
    bad = core;
    add(bad, 7, 0, -32769);
    CHECK(refusal(bad).find("undo adjustment -32769") != std::string::npos);
    bad = core;
    add(bad, 7, 0, 0);
    CHECK(refusal(bad).find("undo adjustment 0") != std::string::npos);
    bad = core;
    add(bad, 3, 1, 2);
    CHECK(refusal(bad).find("set 3 number 1: two undo adjustments") != std::string::npos);
    // restore_semadj checks too, before any semop.
    CHECK_FALSE(restore_semadj(bad));
}

TEST_CASE("semadj: restored adjustments leave the values and are applied at exit") {
    // A child with its own IPC namespace owns the set; a grandchild takes the adjustments, checks
    // the values, then exits; the child checks what the kernel applied and reports by exit code.
    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        if (unshare(CLONE_NEWIPC) != 0)
            _exit(10);
        int id = semget(IPC_PRIVATE, 4, IPC_CREAT | 0600);
        unsigned short init[4] = {0, 30000, 32767, 5};
        if (id < 0 || semctl(id, 0, SETALL, init) != 0)
            _exit(11);
        images::TaskCore core;
        core.set_pid(getpid());
        add(core, id, 0, 32767);    // from 0: the value has no room to go down first
        add(core, id, 1, -20000);
        add(core, id, 2, -32768);   // from the top: no room to go up first; two steps of 16384
        add(core, id, 3, 1);
        pid_t g = fork();
        if (g == 0) {
            if (!restore_semadj(core))
                _exit(1);
            unsigned short v[4];
            if (semctl(id, 0, GETALL, v) != 0)
                _exit(2);
            for (int i = 0; i < 4; i++)
                if (v[i] != init[i])
                    _exit(3);  // restoring the adjustments moved a value
            _exit(0);
        }
        int st = 0;
        if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            _exit(20 + (WIFEXITED(st) ? WEXITSTATUS(st) : 9));
        unsigned short v[4];
        if (semctl(id, 0, GETALL, v) != 0)
            _exit(13);
        // Applied at the grandchild's exit, clamped to [0, 32767] by the kernel.
        unsigned short want[4] = {32767, 10000, 0, 6};
        for (int i = 0; i < 4; i++)
            if (v[i] != want[i])
                _exit(30 + i);
        _exit(0);
    }
    int st = 0;
    REQUIRE(waitpid(c, &st, 0) == c);
    REQUIRE(WIFEXITED(st));
    INFO("exit code " << WEXITSTATUS(st)
                      << " (1: restore_semadj failed, 3: a value moved, 30+i: semaphore i not adjusted at exit)");
    CHECK(WEXITSTATUS(st) == 0);
}
