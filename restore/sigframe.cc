#include "restore/sigframe.h"

#include <cstring>

#include "criu/core/assert.h"

namespace criu {
namespace {

// Offsets inside the frame (arch/x86/include/asm/sigframe.h, uapi asm/sigcontext.h).
constexpr size_t kUcFlags = 8;
constexpr size_t kUcStack = 24;       // stack_t: ss_sp, ss_flags (+pad), ss_size
constexpr size_t kSigcontext = 48;
constexpr size_t kUcSigmask = 48 + 256;
// uc_flags: the sigcontext carries ss and extended FP state; ss is restored strictly.
constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;

void put64(std::span<uint8_t> b, size_t off, uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
void put32(std::span<uint8_t> b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
void put16(std::span<uint8_t> b, size_t off, uint16_t v) { std::memcpy(b.data() + off, &v, 2); }

}  // namespace

Expected<UserRegs> decode_user_regs(const std::string& raw) {
    if (raw.size() != kUserRegCount * 8)
        return failf(EINVAL, "gpregs are {} bytes, a user_regs_struct has {}", raw.size(),
                     kUserRegCount * 8);
    UserRegs r;
    std::memcpy(r.data(), raw.data(), raw.size());
    return r;
}

void build_sigframe(const SigframeInput& in, std::span<uint8_t> frame, std::span<uint8_t> fpstate,
                    uint64_t fpstate_addr) {
    CRIU_ASSERT(frame.size() >= kSigframeSize);
    CRIU_ASSERT(fpstate.size() >= in.xsave.size() + 4);
    CRIU_ASSERT(fpstate_addr % 64 == 0);  // XRSTOR faults on an unaligned area
    std::memset(frame.data(), 0, kSigframeSize);

    put64(frame, kUcFlags, kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs);
    put64(frame, kUcStack, in.altstack_sp);
    put32(frame, kUcStack + 8, uint32_t(in.altstack_flags));
    put64(frame, kUcStack + 16, in.altstack_size);

    const UserRegs& r = in.regs;
    // struct sigcontext (64-bit) field order.
    const uint64_t sc[] = {r[kR8],  r[kR9],  r[kR10], r[kR11], r[kR12], r[kR13], r[kR14], r[kR15],
                           r[kRdi], r[kRsi], r[kRbp], r[kRbx], r[kRdx], r[kRax], r[kRcx], r[kRsp],
                           r[kRip], r[kEflags]};
    for (size_t i = 0; i < std::size(sc); i++)
        put64(frame, kSigcontext + i * 8, sc[i]);
    put16(frame, kSigcontext + 144, uint16_t(kUserCs));
    // gs/fs selectors are not loaded by a 64-bit sigreturn; fs_base is set with ARCH_SET_FS.
    put16(frame, kSigcontext + 150, uint16_t(kUserDs));
    put64(frame, kSigcontext + 184, fpstate_addr);
    put64(frame, kUcSigmask, in.blocked);

    std::memcpy(fpstate.data(), in.xsave.data(), in.xsave.size());
    // The kernel trusts the extended state only if sw_reserved says what it is and the second
    // magic sits right after it; otherwise it restores the FXSAVE part alone and upper
    // YMM/ZMM are lost without any error (KERNEL-NOTES pitfall 9).
    std::memset(fpstate.data() + kFxSwBytesOffset, 0, 48);
    const uint32_t size = uint32_t(in.xsave.size());
    put32(fpstate, kFxSwBytesOffset + 0, kFpXstateMagic1);
    put32(fpstate, kFxSwBytesOffset + 4, size + 4);  // extended_size
    put64(fpstate, kFxSwBytesOffset + 8, in.xcr0);   // xfeatures
    put32(fpstate, kFxSwBytesOffset + 16, size);     // xstate_size
    put32(fpstate, size, kFpXstateMagic2);
}

}  // namespace criu
