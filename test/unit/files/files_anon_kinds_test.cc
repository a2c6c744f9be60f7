// eventfd, signalfd and timerfd: a child sets one up, it is dumped with FilesDumper, and a fresh
// child restores it with FilesRestorer and checks from inside that it behaves as the dumped one.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

uint64_t sigbit(int sig) { return uint64_t(1) << (sig - 1); }

double seconds(const timespec& t) { return double(t.tv_sec) + double(t.tv_nsec) / 1e9; }

std::string field(const std::string& fdinfo, const std::string& key) {
    size_t at = fdinfo.find(key + ":");
    if (at == std::string::npos)
        return "";
    at += key.size() + 1;
    while (at < fdinfo.size() && (fdinfo[at] == ' ' || fdinfo[at] == '\t'))
        ++at;
    return fdinfo.substr(at, fdinfo.find('\n', at) - at);
}

}  // namespace

TEST_CASE("eventfd: counter and semaphore mode survive dump and restore") {
    TempDir images;
    constexpr uint64_t kBig = 0x100000005ull;  // wider than eventfd()'s 32-bit initial value
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        int sem = eventfd(42, EFD_SEMAPHORE | EFD_NONBLOCK);
        int big = eventfd(0, 0);
        uint64_t n = kBig;
        return sem >= 0 && place(sem, 10) && big >= 0 && write(big, &n, sizeof n) == sizeof n && place(big, 11, true);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");

    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_eventfd());
    CHECK(files[10].eventfd().counter() == 42);
    CHECK(files[10].eventfd().semaphore());
    CHECK((files[10].eventfd().flags() & O_NONBLOCK) != 0);
    CHECK(files[11].eventfd().counter() == kBig);
    CHECK_FALSE(files[11].eventfd().semaphore());

    std::string out = restore_and_check(images.fd(), pid, log, [] {
        uint64_t v = 0;
        expect(read(10, &v, sizeof v) == sizeof v && v == 1, fmt::format("semaphore read gave {}", v));
        expect(field(own_fdinfo(10), "eventfd-count") == "29", "count went 42 -> 41: " + own_fdinfo(10));
        expect(field(own_fdinfo(10), "eventfd-semaphore") == "1", "semaphore mode");
        expect((fcntl(10, F_GETFL) & O_NONBLOCK) != 0, "O_NONBLOCK on the semaphore eventfd");
        expect(fcntl(11, F_GETFD) == FD_CLOEXEC, "fd 11 close-on-exec");
        expect((fcntl(11, F_GETFL) & O_NONBLOCK) == 0, "fd 11 blocking");
        expect(read(11, &v, sizeof v) == sizeof v && v == kBig, fmt::format("plain read gave {:#x}", v));
    });
    CHECK(out == "");
}

TEST_CASE("signalfd: the mask survives and a signal raised after restore is read from it") {
    TempDir images;
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGRTMIN);
        int fd = signalfd(-1, &set, SFD_NONBLOCK);
        return fd >= 0 && place(fd, 10);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_signalfd());
    CHECK(files[10].signalfd().mask() == (sigbit(SIGUSR1) | sigbit(SIGRTMIN)));

    std::string out = restore_and_check(images.fd(), pid, log, [] {
        expect(field(own_fdinfo(10), "sigmask") == fmt::format("{:016x}", sigbit(SIGUSR1) | sigbit(SIGRTMIN)),
               "restored mask: " + own_fdinfo(10));
        expect((fcntl(10, F_GETFL) & O_NONBLOCK) != 0, "O_NONBLOCK");
        // A signalfd only takes signals that are blocked (signalfd(2)).
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigaddset(&block, SIGUSR2);
        sigaddset(&block, SIGRTMIN);
        sigprocmask(SIG_BLOCK, &block, nullptr);
        signalfd_siginfo si{};
        expect(read(10, &si, sizeof si) < 0 && errno == EAGAIN, "nothing pending before raise");
        raise(SIGUSR2);  // not in the mask: stays pending, never read
        raise(SIGUSR1);
        expect(read(10, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1,
               fmt::format("read signal {} instead of SIGUSR1", si.ssi_signo));
        sigqueue(getpid(), SIGRTMIN, sigval{.sival_int = 77});
        expect(read(10, &si, sizeof si) == sizeof si && si.ssi_signo == unsigned(SIGRTMIN) && si.ssi_int == 77,
               fmt::format("read signal {} value {} instead of SIGRTMIN 77", si.ssi_signo, si.ssi_int));
        expect(read(10, &si, sizeof si) < 0 && errno == EAGAIN, "SIGUSR2 must not be read");
    });
    CHECK(out == "");
}

TEST_CASE("timerfd: time left, interval, pending expirations and absolute deadlines survive") {
    TempDir images;
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        // fd 11 expires at 50 ms and every 2 s: after 2.2 s it has expired twice, unread, and
        // the next expiry is 1.85 s away.
        int twice = timerfd_create(CLOCK_MONOTONIC, 0);
        itimerspec t2{{2, 0}, {0, 50'000'000}};
        if (twice < 0 || timerfd_settime(twice, 0, &t2, nullptr) != 0 || !place(twice, 11))
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2200));
        // fd 10: 3 s left, then every second.
        int left = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        itimerspec t1{{1, 0}, {3, 0}};
        if (left < 0 || timerfd_settime(left, 0, &t1, nullptr) != 0 || !place(left, 10))
            return false;
        // fd 12: a wall-clock deadline a minute from now, cancelled if the clock is set.
        int abs = timerfd_create(CLOCK_REALTIME, 0);
        timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        itimerspec t3{{0, 0}, {now.tv_sec + 60, now.tv_nsec}};
        return abs >= 0 && timerfd_settime(abs, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &t3, nullptr) == 0 &&
               place(abs, 12);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_timerfd());
    const auto& left = files[10].timerfd();
    CHECK(left.clockid() == CLOCK_MONOTONIC);
    CHECK(left.interval_sec() == 1);
    CHECK(left.value_sec() <= 2);  // 3 s minus the time to dump
    CHECK(left.ticks() == 0);
    // The overruns of the expired periodic timer were counted (timerfd_gettime at dump).
    CHECK(files[11].timerfd().ticks() == 2);
    CHECK(files[12].timerfd().has_deadline());
    CHECK(files[12].timerfd().settime_flags() == (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));

    std::string out = restore_and_check(images.fd(), pid, log, [] {
        itimerspec cur{};
        expect(timerfd_gettime(10, &cur) == 0 && seconds(cur.it_interval) == 1.0 && seconds(cur.it_value) > 2.0 &&
                   seconds(cur.it_value) <= 3.0,
               fmt::format("fd 10: {} s left, interval {}", seconds(cur.it_value), seconds(cur.it_interval)));
        expect((fcntl(10, F_GETFL) & O_NONBLOCK) != 0, "fd 10 O_NONBLOCK");
        expect(field(own_fdinfo(10), "clockid") == "1", "fd 10 clock");

        uint64_t n = 0;
        expect(read(11, &n, sizeof n) == sizeof n && n == 2, fmt::format("fd 11 read {} expirations, not 2", n));
        // It was 1.85 s from its next expiry when dumped, minus the time the dump took.
        pollfd p{11, POLLIN, 0};
        expect(poll(&p, 1, 3000) == 1, "fd 11 did not fire again within 3 s");
        expect(read(11, &n, sizeof n) == sizeof n && n == 1, fmt::format("fd 11 then read {} expirations", n));

        expect(field(own_fdinfo(12), "settime flags") == "03", "fd 12 flags: " + own_fdinfo(12));
        expect(timerfd_gettime(12, &cur) == 0 && seconds(cur.it_value) > 50 && seconds(cur.it_value) <= 60,
               fmt::format("fd 12: {} s left", seconds(cur.it_value)));
    });
    CHECK(out == "");
}

TEST_CASE("timerfd: a wall-clock deadline that passed while dumped fires at restore, a relative timer does not") {
    TempDir images;
    pid_t pid = spawn_ready_child([] {
        if (!stdio_null_rest_closed())
            return false;
        timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int wall = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
        itimerspec at{{0, 0}, {now.tv_sec + 1, now.tv_nsec}};
        int rel = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        itimerspec in{{0, 0}, {1, 0}};
        return wall >= 0 && timerfd_settime(wall, TFD_TIMER_ABSTIME, &at, nullptr) == 0 && place(wall, 10) &&
               rel >= 0 && timerfd_settime(rel, 0, &in, nullptr) == 0 && place(rel, 11);
    });
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    // "Dumped" for longer than either timer had left.
    std::this_thread::sleep_for(std::chrono::milliseconds(1300));
    std::string out = restore_and_check(images.fd(), pid, log, [] {
        uint64_t n = 0;
        expect(read(10, &n, sizeof n) == sizeof n && n == 1, "the passed wall-clock deadline must have fired");
        expect(read(11, &n, sizeof n) < 0 && errno == EAGAIN, "the relative timer restarts its time left");
        itimerspec cur{};
        expect(timerfd_gettime(11, &cur) == 0 && seconds(cur.it_value) > 0.5,
               fmt::format("relative timer: {} s left", seconds(cur.it_value)));
    });
    CHECK(out == "");
}
