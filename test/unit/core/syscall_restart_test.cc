#include <catch2/catch.hpp>

#include "criu/core/syscall_restart.h"

using namespace criu;

namespace {
user_regs_struct stopped_in(uint64_t nr, int64_t rax) {
    user_regs_struct r{};
    r.orig_rax = nr;
    r.rax = static_cast<uint64_t>(rax);
    r.rip = 0x1000;
    return r;
}
}  // namespace

TEST_CASE("restart fix-up: interrupted read is re-executed, restart_block calls become EINTR in images") {
    auto r = restart_fixup(stopped_in(SYS_read, kERestartSys), RestartMode::Image);
    CHECK(r.rax == SYS_read);
    CHECK(r.rip == 0x1000 - 2);
    CHECK(static_cast<int64_t>(r.orig_rax) == -1);

    r = restart_fixup(stopped_in(SYS_poll, kERestartRestartBlock), RestartMode::Image);
    CHECK(static_cast<int64_t>(r.rax) == -EINTR);
    CHECK(r.rip == 0x1000);

    r = restart_fixup(stopped_in(SYS_poll, kERestartRestartBlock), RestartMode::Kernel);
    CHECK(r.rax == SYS_restart_syscall);
    CHECK(r.rip == 0x1000 - 2);
}

TEST_CASE("restart fix-up: a relative sleep with rem is re-issued for the time left") {
    auto s = stopped_in(SYS_clock_nanosleep, kERestartRestartBlock);
    s.rdi = 1;       // CLOCK_MONOTONIC
    s.rsi = 0;       // relative
    s.rdx = 0x5000;  // req
    s.r10 = 0x6000;  // rem: the kernel wrote the time left here
    auto r = restart_fixup(s, RestartMode::Image);
    CHECK(r.rax == SYS_clock_nanosleep);
    CHECK(r.rdx == 0x6000);
    CHECK(r.rip == 0x1000 - 2);

    s.r10 = 0;  // no rem: nothing tells the time left
    r = restart_fixup(s, RestartMode::Image);
    CHECK(static_cast<int64_t>(r.rax) == -EINTR);

    s.rsi = 1;  // TIMER_ABSTIME: the same request is still right
    r = restart_fixup(s, RestartMode::Image);
    CHECK(r.rax == SYS_clock_nanosleep);
    CHECK(r.rdx == 0x5000);

    auto n = stopped_in(SYS_nanosleep, kERestartRestartBlock);
    n.rdi = 0x5000;
    n.rsi = 0x6000;
    r = restart_fixup(n, RestartMode::Kernel);
    CHECK(r.rax == SYS_nanosleep);
    CHECK(r.rdi == 0x6000);
}
