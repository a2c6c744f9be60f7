#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "restore/pid_claim.h"

using namespace criu;
using namespace std::chrono_literals;

TEST_CASE("a zombie holding a pid is waited for until its parent reaps it") {
    pid_t z = fork();
    REQUIRE(z >= 0);
    if (z == 0)
        _exit(0);
    // Let it become a zombie, then reap it a little later, as a slow init would.
    for (int i = 0; i < 4000 && find_pid_holder(z).state != 'Z'; i++)  // 20 s on a loaded machine
        std::this_thread::sleep_for(5ms);
    PidHolder h = find_pid_holder(z);
    CHECK(h.exists);
    CHECK(h.exiting);
    CHECK_THAT(h.describe(z), Catch::Contains("zombie") && Catch::Contains(std::to_string(getpid())));
    std::thread reaper([z] {
        std::this_thread::sleep_for(200ms);
        waitpid(z, nullptr, 0);
    });
    Log log(0);
    auto st = wait_pid_free(z, "pid", log, 3000ms);
    reaper.join();
    CHECK(st);
}

TEST_CASE("a zombie nobody reaps fails after the limit, naming its parent") {
    pid_t z = fork();
    REQUIRE(z >= 0);
    if (z == 0)
        _exit(0);
    for (int i = 0; i < 4000 && find_pid_holder(z).state != 'Z'; i++)  // 20 s on a loaded machine
        std::this_thread::sleep_for(5ms);
    Log log(0);
    auto st = wait_pid_free(z, "tid", log, 100ms);
    waitpid(z, nullptr, 0);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().str(), Catch::Contains(fmt::format("tid {} is taken", z)) &&
                                     Catch::Contains(fmt::format("its parent {} has not reaped", getpid())));
}

TEST_CASE("a running holder is named with its comm; a thread with its process") {
    Log log(0);
    auto st = wait_pid_free(getpid(), "pid", log, 100ms);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().str(), Catch::Contains("unit_restore") && Catch::Contains("is running"));
    std::atomic<pid_t> tid{0};
    std::atomic<bool> done{false};
    std::thread t([&] {
        tid = gettid();
        while (!done)  // alive until looked at, however slowly the test runs
            std::this_thread::sleep_for(1ms);
    });
    while (!tid)
        std::this_thread::sleep_for(1ms);
    PidHolder h = find_pid_holder(tid);
    done = true;
    t.join();
    CHECK_THAT(h.describe(tid),
               Catch::Contains(fmt::format("thread {} (", tid)) && Catch::Contains(fmt::format("of process {}", getpid())));
}
