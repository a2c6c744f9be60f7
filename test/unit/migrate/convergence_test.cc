// The pre-copy convergence controller (migrate/live/convergence.h) and the parsers of the
// cgroup throttle (migrate/live/cgroup_throttle.h).
#include <catch2/catch.hpp>

#include "migrate/live/cgroup_throttle.h"
#include "migrate/live/convergence.h"

using namespace criu;
using A = ConvergenceController::Action;

namespace {

// A round that sent `pages` at 10 MiB/s (bytes = pages * 4096).
ConvergenceRound round_of(uint64_t pages, double cpu = 1.0) {
    uint64_t bytes = pages * 4096;
    uint64_t ms = std::max<uint64_t>(1, bytes * 1000 / (10 << 20));
    return ConvergenceRound{pages, bytes, ms, cpu};
}

}  // namespace

TEST_CASE("a shrinking dirty set converges once the rest fits the target", "[convergence]") {
    ConvergenceController c(100, 8, true);
    CHECK(c.after_round(round_of(25600)).action == A::another_round);  // 100 MiB: 10 s
    CHECK(c.after_round(round_of(2560)).action == A::another_round);   // 1 s
    auto d = c.after_round(round_of(200));                             // 78 ms at 10 MiB/s
    CHECK(d.action == A::converged);
    CHECK(d.rest_ms < 100);
    CHECK_FALSE(c.throttling());
}

TEST_CASE("without throttling a stalled dirty set gives up at once", "[convergence]") {
    ConvergenceController c(100, 8, false);
    CHECK(c.after_round(round_of(4096)).action == A::another_round);
    CHECK(c.after_round(round_of(4000)).action == A::another_round);
    CHECK(c.after_round(round_of(3990)).action == A::give_up);  // shrank by less than a tenth
}

TEST_CASE("the rounds running out count as not converging", "[convergence]") {
    ConvergenceController c(100, 2, false);
    CHECK(c.after_round(round_of(8192)).action == A::another_round);
    CHECK(c.after_round(round_of(4096)).action == A::give_up);
}

TEST_CASE("a stalled dirty set is throttled ever harder until it converges", "[convergence]") {
    ConvergenceController c(100, 8, true);
    c.after_round(round_of(4096));
    c.after_round(round_of(4096));
    auto d = c.after_round(round_of(4096, 0.8));
    REQUIRE(d.action == A::throttle);
    // Dirtied as fast as it was sent: the limit is what it used, times half the ratio.
    CHECK(d.cpus == Approx(0.4).margin(0.01));
    CHECK(c.throttling());
    // The next round still carries what was dirtied before the limit: not judged.
    CHECK(c.after_round(round_of(4096)).action == A::another_round);
    d = c.after_round(round_of(4096));
    REQUIRE(d.action == A::throttle);
    CHECK(d.cpus == Approx(0.1).margin(0.001));
    CHECK(c.after_round(round_of(4096)).action == A::another_round);
    CHECK(c.after_round(round_of(100)).action == A::converged);
    CHECK(c.min_cpus() == Approx(0.1).margin(0.001));
}

TEST_CASE("throttling gives up after two rounds at the floor", "[convergence]") {
    ConvergenceController c(100, 3, true);
    c.after_round(round_of(4096));
    c.after_round(round_of(4096));
    REQUIRE(c.after_round(round_of(4096)).action == A::throttle);
    int throttles = 0;
    A last = A::another_round;
    for (int i = 0; i < ConvergenceController::kMaxRounds && last != A::give_up; i++) {
        last = c.after_round(round_of(4096)).action;
        throttles += last == A::throttle;
    }
    CHECK(last == A::give_up);
    CHECK(throttles >= 2);
    CHECK(c.cpus() == Approx(ConvergenceController::kMinCpus));
}

TEST_CASE("a throttled dirty set that keeps shrinking is given more rounds, not a harder limit", "[convergence]") {
    ConvergenceController c(100, 3, true);
    c.after_round(round_of(4096));
    c.after_round(round_of(4096));
    REQUIRE(c.after_round(round_of(4096)).action == A::throttle);
    double limit = c.cpus();
    CHECK(c.after_round(round_of(4096)).action == A::another_round);
    CHECK(c.after_round(round_of(2000)).action == A::another_round);  // halved: on its way
    CHECK(c.cpus() == limit);
    // Down to the floor, then rounds that still shrink go on until it converges.
    while (c.cpus() > ConvergenceController::kMinCpus)
        c.after_round(round_of(2000));
    CHECK(c.after_round(round_of(2000)).action == A::another_round);
    CHECK(c.after_round(round_of(1500)).action == A::another_round);
    CHECK(c.after_round(round_of(1000)).action == A::another_round);
    CHECK(c.after_round(round_of(600)).action == A::another_round);
    CHECK(c.after_round(round_of(200)).action == A::converged);
}

TEST_CASE("/proc/PID/cgroup: the cpu controller on v1 or v2", "[throttle]") {
    SECTION("hybrid: cpu on a v1 hierarchy") {
        auto lines = parse_proc_cgroup("9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/jobs/x\n0::/\n");
        REQUIRE(lines);
        REQUIRE(lines->size() == 4);
        auto cg = find_cpu_cgroup(*lines);
        REQUIRE(cg);
        CHECK_FALSE(cg->v2);
        CHECK(cg->mount_options == "cpu,cpuacct");
        CHECK(cg->path == "/jobs/x");
        std::string mi =
            "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory\n"
            "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct\n";
        CHECK(find_cgroup_mount(mi, *cg) == "/sys/fs/cgroup/cpu,cpuacct");
        // A bind mount of a subdirectory is not the hierarchy's root.
        CHECK_FALSE(find_cgroup_mount("31 25 0:27 /jobs /mnt rw - cgroup cgroup rw,cpu,cpuacct\n", *cg));
    }
    SECTION("unified") {
        auto lines = parse_proc_cgroup("0::/user.slice/job-7.scope\n");
        REQUIRE(lines);
        auto cg = find_cpu_cgroup(*lines);
        REQUIRE(cg);
        CHECK(cg->v2);
        CHECK(cg->path == "/user.slice/job-7.scope");
        CHECK(find_cgroup_mount("28 24 0:25 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", *cg) ==
              "/sys/fs/cgroup");
        CHECK_FALSE(find_cgroup_mount("30 25 0:26 / /x rw - cgroup cgroup rw,cpu\n", *cg));
    }
    SECTION("malformed lines are refused") {
        CHECK_FALSE(parse_proc_cgroup("nonsense\n"));
        CHECK_FALSE(parse_proc_cgroup("1:cpu:relative\n"));
        CHECK_FALSE(parse_proc_cgroup("x:cpu:/a\n"));
    }
    SECTION("no cpu controller anywhere") {
        auto lines = parse_proc_cgroup("4:memory:/a\n");
        REQUIRE(lines);
        CHECK_FALSE(find_cpu_cgroup(*lines));
    }
}
