#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "restore/sigframe.h"

using namespace criu;

namespace {

template <class T>
T load(const std::vector<uint8_t>& b, size_t off) {
    T v;
    std::memcpy(&v, b.data() + off, sizeof(v));
    return v;
}

}  // namespace

TEST_CASE("the sigframe carries registers in sigcontext order and the XSAVE magics") {
    SigframeInput in;
    for (size_t i = 0; i < kUserRegCount; i++)
        in.regs[i] = 0x1000 + i;
    in.regs[kCs] = kUserCs;
    std::string xs(2432, '\x5a');
    in.xsave = xs;
    in.xcr0 = 0xe7;
    in.blocked = 0x4001;
    in.altstack_sp = 0x7000;
    in.altstack_size = 0x2000;
    in.altstack_flags = 0;
    std::vector<uint8_t> frame(kSigframeSize), fp(xs.size() + 4);
    build_sigframe(in, frame, fp, 0x7f0000001000);

    constexpr size_t sc = 48;
    CHECK(load<uint64_t>(frame, 8) == 0x7);               // UC_FP_XSTATE|UC_SIGCONTEXT_SS|UC_STRICT_RESTORE_SS
    CHECK(load<uint64_t>(frame, 24) == 0x7000);           // uc_stack.ss_sp
    CHECK(load<uint64_t>(frame, 40) == 0x2000);           // uc_stack.ss_size
    CHECK(load<uint64_t>(frame, sc + 0) == 0x1000 + kR8);
    CHECK(load<uint64_t>(frame, sc + 7 * 8) == 0x1000 + kR15);
    CHECK(load<uint64_t>(frame, sc + 13 * 8) == 0x1000 + kRax);
    CHECK(load<uint64_t>(frame, sc + 15 * 8) == 0x1000 + kRsp);
    CHECK(load<uint64_t>(frame, sc + 16 * 8) == 0x1000 + kRip);
    CHECK(load<uint64_t>(frame, sc + 17 * 8) == 0x1000 + kEflags);
    CHECK(load<uint16_t>(frame, sc + 144) == 0x33);
    CHECK(load<uint16_t>(frame, sc + 150) == 0x2b);
    CHECK(load<uint64_t>(frame, sc + 184) == 0x7f0000001000);  // fpstate
    CHECK(load<uint64_t>(frame, sc + 256) == 0x4001);          // uc_sigmask

    CHECK(load<uint32_t>(fp, 464) == kFpXstateMagic1);
    CHECK(load<uint32_t>(fp, 468) == 2432 + 4);  // extended_size
    CHECK(load<uint64_t>(fp, 472) == 0xe7);      // xfeatures
    CHECK(load<uint32_t>(fp, 480) == 2432);      // xstate_size
    CHECK(load<uint32_t>(fp, 2432) == kFpXstateMagic2);
    CHECK(fp[0] == 0x5a);
    CHECK(fp[1000] == 0x5a);
}
