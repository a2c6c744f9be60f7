// The rt_sigframe each restored thread returns through (KERNEL-NOTES section 5, step 9):
// general registers from the dumped struct user_regs_struct, the XSAVE area as fpstate with
// the software-reserved bytes and the trailing magic the kernel checks before it trusts the
// extended state, the blocked mask and the sigaltstack.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "criu/core/error.h"

namespace criu {

// Word indices of x86-64 struct user_regs_struct (sys/user.h), as PTRACE_GETREGS fills it.
enum UserReg : size_t {
    kR15, kR14, kR13, kR12, kRbp, kRbx, kR11, kR10, kR9, kR8, kRax, kRcx, kRdx, kRsi, kRdi,
    kOrigRax, kRip, kCs, kEflags, kRsp, kSs, kFsBase, kGsBase, kDs, kEs, kFs, kGs, kUserRegCount
};
using UserRegs = std::array<uint64_t, kUserRegCount>;

// Decodes the 216 raw bytes of a dumped user_regs_struct.
Expected<UserRegs> decode_user_regs(const std::string& raw);

inline constexpr uint64_t kUserCs = 0x33;  // __USER_CS: 64-bit user code
inline constexpr uint64_t kUserDs = 0x2b;  // __USER_DS
inline constexpr size_t kSigframeSize = 8 + 304 + 128;  // pretcode, ucontext, siginfo
inline constexpr size_t kXsaveHeaderOffset = 512;        // XSTATE_BV, then XCOMP_BV
inline constexpr size_t kFxSwBytesOffset = 464;          // sw_reserved of the FXSAVE area
inline constexpr uint32_t kFpXstateMagic1 = 0x46505853;  // "FPXS"
inline constexpr uint32_t kFpXstateMagic2 = 0x46505845;  // "FPXE"

struct SigframeInput {
    UserRegs regs{};
    std::string_view xsave;  // raw NT_X86_XSTATE buffer, standard format
    uint64_t xcr0 = 0;       // features this kernel restores from the frame
    uint64_t blocked = 0;  // signal mask (sigmask is a macro in signal.h)
    uint64_t altstack_sp = 0;
    int32_t altstack_flags = 0;
    uint64_t altstack_size = 0;
};

// Writes the frame into `frame` (kSigframeSize bytes) and the fpstate into `fpstate`
// (xsave.size() + 4 bytes, which must sit at the 64-byte aligned address `fpstate_addr` in
// the restored process).
void build_sigframe(const SigframeInput& in, std::span<uint8_t> frame, std::span<uint8_t> fpstate,
                    uint64_t fpstate_addr);

}  // namespace criu
