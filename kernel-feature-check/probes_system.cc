// Probes for the vDSO block, the XSAVE area and io_uring, plus the numeric facts
// behind the first two (system_facts.h).
#include <cpuid.h>
#include <elf.h>
#include <sys/auxv.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "kernel-feature-check/kernel_abi.h"
#include "kernel-feature-check/probe_util.h"
#include "kernel-feature-check/system_facts.h"

namespace criu::kfc {

Expected<std::vector<VdsoArea>> read_vdso_layout() {
    std::string maps = TRY(read_text("/proc/self/maps"));
    struct Raw {
        std::string name;
        uint64_t start, end;
    };
    std::vector<Raw> raw;
    std::istringstream in(maps);
    for (std::string line; std::getline(in, line);) {
        size_t br = line.rfind('[');
        if (br == std::string::npos || line.back() != ']')
            continue;
        std::string name = line.substr(br);
        // [vvar_vclock] exists since 6.13 (commit e93d2521b27f); older kernels have
        // only [vvar] and [vdso]. [vsyscall] is fixed and not part of the block.
        if (name != "[vvar]" && name != "[vvar_vclock]" && name != "[vdso]")
            continue;
        unsigned long long s = 0, e = 0;
        if (sscanf(line.c_str(), "%llx-%llx", &s, &e) != 2)
            return failf(EINVAL, "unparsable maps line: {}", line);
        raw.push_back({name, s, e});
    }
    std::sort(raw.begin(), raw.end(), [](const Raw& a, const Raw& b) { return a.start < b.start; });
    if (std::none_of(raw.begin(), raw.end(), [](const Raw& r) { return r.name == "[vdso]"; }))
        return fail(ENOENT, "no [vdso] in /proc/self/maps");
    std::vector<VdsoArea> out;
    for (size_t i = 0; i < raw.size(); i++) {
        if (i > 0 && raw[i].start != raw[i - 1].end)
            return failf(EINVAL, "{} does not follow {} directly", raw[i].name, raw[i - 1].name);
        out.push_back({raw[i].name, raw[i].start - raw[0].start, raw[i].end - raw[i].start});
    }
    return out;
}

std::string vdso_layout_text(const std::vector<VdsoArea>& layout) {
    std::string s;
    for (const auto& a : layout)
        s += fmt::format("{}{} +{:#x} {}K", s.empty() ? "" : ", ", a.name, a.offset, a.size / 1024);
    return s;
}

Expected<XsaveInfo> read_xsave_info() {
    XsaveInfo x;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return fail(ENOTSUP, "CPUID leaf 1 unavailable");
    x.osxsave = c & (1u << 27);
    if (!(c & (1u << 26)))
        return fail(ENOTSUP, "CPU has no XSAVE");
    if (!x.osxsave)
        return fail(ENOTSUP, "XSAVE not enabled by the kernel (OSXSAVE clear)");
    if (__get_cpuid_max(0, nullptr) < 0xd)
        return fail(ENOTSUP, "CPUID leaf 0xD unavailable");
    __cpuid_count(0xd, 0, a, b, c, d);
    x.size = b;
    x.supported = (uint64_t(d) << 32) | a;
    __cpuid_count(0xd, 1, a, b, c, d);
    x.xsavec = a & (1u << 1);
    x.xsaves = a & (1u << 3);
    // xgetbv is only legal with OSXSAVE set, checked above.
    uint32_t lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    x.xcr0 = (uint64_t(hi) << 32) | lo;
    return x;
}

std::string xfeatures_text(uint64_t mask) {
    static const char* const names[] = {"x87",   "sse",   "avx",   "bndregs", "bndcsr",  "opmask", "zmm_hi256",
                                        "hi16_zmm", "pt",  "pkru",  "pasid",   "cet_u",   "cet_s",  "hdc",
                                        "uintr", "lbr",   "hwp",   "xtilecfg", "xtiledata", "apx"};
    std::string s;
    for (unsigned i = 0; i < 64; i++) {
        if (!(mask & (1ull << i)))
            continue;
        s += s.empty() ? "" : "|";
        s += i < std::size(names) ? std::string(names[i]) : fmt::format("bit{}", i);
    }
    return s;
}

Expected<uint32_t> ptrace_xstate_size() {
    auto child = TRY(ScopedChild::spawn([](int) -> int { child_park(); }));
    TRY_VOID(seize_and_stop(child, kProbeTimeoutMs));
    std::vector<uint8_t> buf(64 * 1024);
    iovec iov{buf.data(), buf.size()};
    if (ptrace(PTRACE_GETREGSET, child.pid(), reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0)
        return fail_errno("PTRACE_GETREGSET NT_X86_XSTATE");
    return uint32_t(iov.iov_len);
}

namespace {

ProbeResult probe_vdso() {
    auto layout = read_vdso_layout();
    if (!layout)
        return no(layout.error().str());
    auto vdso = std::find_if(layout->begin(), layout->end(), [](const VdsoArea& a) { return a.name == "[vdso]"; });
    // The kernel tells the process where its vDSO ELF image is; restore must put
    // the block back so that this address (and the vvar offsets) hold.
    uint64_t ehdr = getauxval(AT_SYSINFO_EHDR);
    if (ehdr == 0 || memcmp(reinterpret_cast<const void*>(ehdr), ELFMAG, SELFMAG) != 0)
        return no("AT_SYSINFO_EHDR does not point at an ELF image");
    // Where the block must start if the auxv address is the [vdso] VMA we parsed.
    uint64_t block_start = ehdr - vdso->offset;
    auto maps = read_text("/proc/self/maps");
    if (!maps || maps->find(fmt::format("\n{:x}-", block_start)) == std::string::npos)
        return no("AT_SYSINFO_EHDR does not match the [vdso] VMA in /proc/self/maps");
    return yes(vdso_layout_text(*layout));
}

ProbeResult probe_xsave() {
    auto x = read_xsave_info();
    if (!x)
        return no(x.error().str());
    auto ptrace_size = ptrace_xstate_size();
    if (!ptrace_size)
        return no(ptrace_size.error().str());
    return yes(fmt::format("XCR0 {} ({}), CPUID size {} B, ptrace NT_X86_XSTATE {} B{}{}", hex(x->xcr0),
                           xfeatures_text(x->xcr0), x->size, *ptrace_size, x->xsavec ? ", xsavec" : "",
                           x->xsaves ? ", xsaves" : ""));
}

ProbeResult probe_io_uring() {
    abi::IoUringParams p{};
    UniqueFd fd(int(syscall(SYS_io_uring_setup, 1, &p)));
    if (fd)
        return yes(fmt::format("io_uring_setup works (features {}): tasks may hold rings a dump must refuse",
                               hex(p.features)));
    int e = errno;
    auto sysctl = read_text("/proc/sys/kernel/io_uring_disabled");
    std::string why = sysctl ? fmt::format(" (kernel.io_uring_disabled = {})", sysctl->substr(0, 1)) : "";
    errno = e;
    return no_errno("io_uring_setup" + why);
}

const Probe kProbes[] = {
    {"vdso_layout", Category::Required, "moving the vDSO block back to where the restored task had it",
     "none: restored tasks would call into a misplaced vDSO", probe_vdso},
    {"xsave", Category::Required, "dumping and restoring FPU/SSE/AVX state in XSAVE format",
     "none: extended register state would be lost", probe_xsave},
    {"io_uring", Category::Optional, "nothing to restore: present means a dump must find io_uring fds and refuse early",
     "absent: no task can hold an io_uring, nothing to check", probe_io_uring},
};

}  // namespace

std::span<const Probe> system_probes() { return kProbes; }

}  // namespace criu::kfc
