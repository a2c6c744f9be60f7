#include "restore/host_info.h"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <charconv>
#include <string_view>

#include "criu/core/unique_fd.h"

namespace criu {
namespace {

Expected<std::string> read_small_file(const char* path) {
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", path);
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno("read {}", path);
        }
        if (n == 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

bool parse_hex(std::string_view s, uint64_t& v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), v, 16);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

Expected<std::vector<VdsoPartInfo>> parse_vdso_block(const std::string& maps_text) {
    std::vector<VdsoPartInfo> parts;
    std::string_view text(maps_text);
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t sp = line.rfind(' ');
        if (sp == std::string_view::npos)
            continue;
        std::string_view name = line.substr(sp + 1);
        if (name != "[vvar]" && name != "[vvar_vclock]" && name != "[vdso]")
            continue;
        size_t dash = line.find('-');
        size_t end_of_range = line.find(' ');
        uint64_t start = 0, end = 0;
        if (dash == std::string_view::npos || end_of_range < dash ||
            !parse_hex(line.substr(0, dash), start) ||
            !parse_hex(line.substr(dash + 1, end_of_range - dash - 1), end) || end <= start)
            return failf(EINVAL, "unparsable maps line \"{}\"", line);
        parts.push_back({std::string(name), start, end - start, 0});
    }
    if (parts.empty())
        return parts;
    uint64_t block = parts.front().start;
    for (size_t i = 0; i < parts.size(); i++) {
        if (i > 0 && parts[i].start != parts[i - 1].start + parts[i - 1].size)
            return failf(EINVAL, "vDSO parts are not contiguous: {} at {:#x} after {} ending at {:#x}",
                         parts[i].name, parts[i].start, parts[i - 1].name,
                         parts[i - 1].start + parts[i - 1].size);
        parts[i].offset = parts[i].start - block;
    }
    return parts;
}

Expected<HostInfo> probe_host() {
    HostInfo h;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return fail(ENOTSUP, "this CPU or kernel does not enable XSAVE (CPUID.1:ECX.OSXSAVE)");
    __cpuid_count(0xd, 0, a, b, c, d);
    h.xsave_size = b;
    uint32_t lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    h.xcr0 = uint64_t(hi) << 32 | lo;

    std::string maps = TRY(read_small_file("/proc/self/maps"));
    h.vdso = TRY_CTX(parse_vdso_block(maps), "/proc/self/maps");

    std::string last = TRY(read_small_file("/proc/sys/kernel/cap_last_cap"));
    unsigned v = 0;
    auto r = std::from_chars(last.data(), last.data() + last.size(), v);
    if (r.ec != std::errc() || v >= 64)
        return failf(EINVAL, "/proc/sys/kernel/cap_last_cap: unexpected \"{}\"", last);
    h.cap_last_cap = v;

    struct utsname u;
    if (::uname(&u) == 0)
        h.kernel_release = u.release;
    return h;
}

}  // namespace criu
