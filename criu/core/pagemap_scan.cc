#include "criu/core/pagemap_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

namespace criu {

namespace {
constexpr uint64_t kPage = 4096;
constexpr size_t kRegionBatch = 4096;  // regions per ioctl call
constexpr size_t kRawBatch = 8192;     // pagemap words per pread (32 MiB of address space)

void append(std::vector<PmPageRegion>& out, uint64_t start, uint64_t end, uint64_t cats) {
    // Regions must come out sorted and disjoint whatever a batch boundary did: when the
    // output vector fills, a resumed walk can hand back pages already reported.
    if (!out.empty() && start < out.back().end)
        start = out.back().end;
    if (start >= end)
        return;
    if (!out.empty() && out.back().end == start && out.back().categories == cats)
        out.back().end = end;
    else
        out.push_back({start, end, cats});
}
}  // namespace

Expected<PagemapScanner> PagemapScanner::open(pid_t pid, bool use_ioctl) {
    std::string path = fmt::format("/proc/{}/pagemap", pid);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("pid {}: cannot open {}", pid, path);
    return PagemapScanner(pid, std::move(fd), use_ioctl);
}

Expected<std::vector<PmPageRegion>> PagemapScanner::scan(uint64_t start, uint64_t end, uint64_t anyof,
                                                         uint64_t exclude, uint64_t report) {
    if (!guard_known_) {
        anyof &= ~kPageIsGuard;
        report &= ~kPageIsGuard;
    }
    if (use_ioctl_) {
        auto r = scan_ioctl(start, end, anyof, exclude, report);
        if (r || r.error().err() != EINVAL || !(anyof & kPageIsGuard))
            return r;
        // Kernels before 6.15 reject the GUARD category; they cannot have guard regions either.
        guard_known_ = false;
        return scan_ioctl(start, end, anyof & ~kPageIsGuard, exclude, report & ~kPageIsGuard);
    }
    return scan_raw(start, end, anyof, exclude, report);
}

Status pagemap_scan_walk(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t inverted,
                         uint64_t mask, uint64_t anyof, uint64_t ret,
                         const std::function<void(uint64_t, uint64_t, uint64_t)>& fn) {
    std::vector<PmPageRegion> vec(kRegionBatch);
    uint64_t cur = start;
    uint64_t last_end = 0;
    while (cur < end) {
        PmScanArg a{};
        a.size = sizeof(a);
        a.flags = flags;
        a.start = cur;
        a.end = end;
        a.vec = reinterpret_cast<uint64_t>(vec.data());
        a.vec_len = vec.size();
        a.category_inverted = inverted;
        a.category_mask = mask;
        a.category_anyof_mask = anyof;
        a.return_mask = ret;
        long n = ioctl(pagemap_fd, kPagemapScanIoctl, &a);
        if (n < 0)
            return fail_errno("PAGEMAP_SCAN {:#x}-{:#x}", cur, end);
        for (long i = 0; i < n; ++i) {
            uint64_t s = std::max(vec[i].start, last_end);
            if (s < vec[i].end) {
                fn(s, vec[i].end, vec[i].categories);
                last_end = vec[i].end;
            }
        }
        uint64_t next = a.walk_end;
        if (n > 0)
            next = std::max<uint64_t>(next, vec[n - 1].end);
        if (next <= cur)
            return failf(EPROTO, "PAGEMAP_SCAN made no progress at {:#x}", cur);
        cur = next;
    }
    return {};
}

Expected<std::vector<PmPageRegion>> PagemapScanner::scan_ioctl(uint64_t start, uint64_t end, uint64_t anyof,
                                                               uint64_t exclude, uint64_t report) {
    std::vector<PmPageRegion> out;
    // A page matches when (categories ^ inverted) & mask == mask, and it has one of anyof:
    // with inverted == mask == exclude, "none of exclude".
    TRY_VOID_CTX(pagemap_scan_walk(fd_.get(), start, end, 0, exclude, exclude, anyof, report,
                                   [&](uint64_t s, uint64_t e, uint64_t cats) { append(out, s, e, cats); }),
                 "pid {}", pid_);
    return out;
}

Expected<std::vector<PmPageRegion>> PagemapScanner::scan_raw(uint64_t start, uint64_t end, uint64_t anyof,
                                                             uint64_t exclude, uint64_t report) {
    std::vector<PmPageRegion> out;
    std::vector<uint64_t> words(kRawBatch);
    for (uint64_t cur = start; cur < end;) {
        size_t n = std::min<uint64_t>(kRawBatch, (end - cur) / kPage);
        off_t off = static_cast<off_t>(cur / kPage * sizeof(uint64_t));
        ssize_t got = pread(fd_.get(), words.data(), n * sizeof(uint64_t), off);
        if (got < 0)
            return fail_errno("pid {}: reading /proc/{}/pagemap at {:#x}", pid_, pid_, cur);
        if (got == 0)
            break;
        size_t words_read = static_cast<size_t>(got) / sizeof(uint64_t);
        for (size_t i = 0; i < words_read; ++i) {
            uint64_t w = words[i];
            uint64_t cats = 0;
            if (w & kPmPresent)
                cats |= kPageIsPresent;
            // Bit 62 also marks guard markers (with bit 58); they are not swapped data.
            if (w & kPmGuardRegion)
                cats |= kPageIsGuard;
            else if (w & kPmSwap)
                cats |= kPageIsSwapped;
            if (w & kPmFileOrSharedAnon)
                cats |= kPageIsFile;
            if ((cats & anyof) && !(cats & exclude)) {
                uint64_t a = cur + i * kPage;
                append(out, a, a + kPage, cats & report);
            }
        }
        cur += words_read * kPage;
    }
    return out;
}

}  // namespace criu
