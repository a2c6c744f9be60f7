#include "migrate/live/convergence.h"

#include <algorithm>

namespace criu {

ConvergenceController::Decision ConvergenceController::after_round(const ConvergenceRound& r) {
    rounds_.push_back(r);
    const size_t n = rounds_.size();
    Decision d;
    double secs = double(std::max<uint64_t>(1, r.ms)) / 1000.0;
    double bw = std::max(1.0, double(r.bytes) / secs);  // bytes/s, reading included
    d.rest_ms = double(r.pages) * 4096.0 / bw * 1000.0;
    if (d.rest_ms <= target_ms_) {
        d.action = Action::converged;
        return d;
    }
    if (throttling()) {
        throttled_rounds_++;
        const uint64_t before = rounds_[n - 2].pages;  // a throttle follows a round: n >= 2
        if (n >= size_t(kMaxRounds)) {
            d.action = Action::give_up;
        } else if (cpus_ <= kMinCpus) {
            // Small rounds measure a low bandwidth (a round's fixed cost weighs more): go on
            // while the dirty set still shrinks.
            bool shrinking = r.pages * 10 <= before * 9;
            d.action = !shrinking && ++rounds_at_floor_ >= 2 ? Action::give_up : Action::another_round;
        } else if (throttled_rounds_ < 2 || r.pages * 2 <= before) {
            // The first round after a change still sent what was dirtied before it; a dirty
            // set that halves is on its way.
            d.action = Action::another_round;
        } else {
            cpus_ = std::max(kMinCpus, cpus_ * 0.25);
            min_cpus_ = cpus_;
            throttled_rounds_ = 0;
            d.action = Action::throttle;
            d.cpus = cpus_;
        }
        return d;
    }
    bool stalled = (n >= 3 && r.pages * 10 > rounds_[n - 2].pages * 9) || n >= size_t(max_rounds_);
    if (!stalled) {
        d.action = Action::another_round;
        return d;
    }
    if (!may_throttle_ || n >= size_t(kMaxRounds)) {
        d.action = Action::give_up;
        return d;
    }
    // The rate it dirtied memory at: this round's pages were written while the previous one ran.
    double dirty_secs = n >= 2 ? double(std::max<uint64_t>(1, rounds_[n - 2].ms)) / 1000.0 : secs;
    double dirty_rate = std::max(1.0, double(r.pages) * 4096.0 / dirty_secs);
    double used = r.cpu > 0 ? r.cpu : 1.0;
    cpus_ = std::clamp(used * std::min(0.5, 0.5 * bw / dirty_rate), kMinCpus, std::max(kMinCpus, used * 0.5));
    min_cpus_ = cpus_;
    throttled_rounds_ = 0;
    d.action = Action::throttle;
    d.cpus = cpus_;
    return d;
}

}  // namespace criu
