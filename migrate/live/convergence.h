// The pre-copy convergence controller of `criu migrate` (migrate_source.cc), as a pure
// function of what the rounds measured, so that its decisions are unit-tested.
//
// After every round it compares what that round had to send (the pages dirtied while the
// round before it ran) with the bandwidth the round measured: once the rest fits the
// downtime target it stops (converged). A round that no longer shrinks the dirty set by a
// tenth (from the third on), or the last allowed round, means the process writes as fast
// as we send. Then, if throttling is allowed, the process's CPU is limited (cgroup_throttle.h)
// and the rounds go on: the first limit is its measured CPU use scaled by half the ratio
// of the link's rate to the rate it dirtied memory at, then a quarter of the last one for
// every round that neither converges nor halves the dirty set (the first round after a
// change still carries pages dirtied before it, so it is not judged), down to 1% of a CPU;
// two rounds at 1% that neither converge nor shrink the dirty set by a tenth end it
// (give_up: post-copy if allowed, else the frozen copy of whatever is left), as do 30
// rounds in all. Without throttling a non-converging round ends the rounds at once.
#pragma once

#include <cstdint>
#include <vector>

namespace criu {

struct ConvergenceRound {
    uint64_t pages = 0;  // pages the round sent
    uint64_t bytes = 0;  // bytes on the wire in the round
    uint64_t ms = 0;     // its wall time (at least 1)
    double cpu = 0;      // CPUs the process used while the round ran (0: unknown)
};

class ConvergenceController {
public:
    enum class Action { another_round, converged, throttle, give_up };
    struct Decision {
        Action action = Action::another_round;
        double cpus = 0;      // throttle: the new limit, in CPUs
        double rest_ms = 0;   // what the last round's dirty set would take to send
    };

    static constexpr int kMaxRounds = 30;
    static constexpr double kMinCpus = 0.01;

    ConvergenceController(int max_downtime_ms, int max_rounds, bool may_throttle)
        : target_ms_(max_downtime_ms), max_rounds_(max_rounds), may_throttle_(may_throttle) {}

    Decision after_round(const ConvergenceRound& r);

    bool throttling() const { return cpus_ > 0; }
    double cpus() const { return cpus_; }          // the current limit (0: none)
    double min_cpus() const { return min_cpus_; }  // the strongest limit set
    int throttled_rounds() const { return throttled_rounds_; }

private:
    int target_ms_;
    int max_rounds_;
    bool may_throttle_;
    std::vector<ConvergenceRound> rounds_;
    double cpus_ = 0, min_cpus_ = 0;
    int throttled_rounds_ = 0;  // rounds run under the current throttle
    int rounds_at_floor_ = 0;
};

}  // namespace criu
