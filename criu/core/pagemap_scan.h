// Which pages of a process exist, by category: PAGEMAP_SCAN (6.7+) when the kernel has it, else
// the raw /proc/PID/pagemap words. The UAPI is defined here since the system headers are 6.1.
#pragma once

#include <sys/ioctl.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

// PAGEMAP_SCAN categories (include/uapi/linux/fs.h, 6.7; GUARD 6.15).
inline constexpr uint64_t kPageIsWpAllowed = 1u << 0;
inline constexpr uint64_t kPageIsWritten = 1u << 1;
inline constexpr uint64_t kPageIsFile = 1u << 2;
inline constexpr uint64_t kPageIsPresent = 1u << 3;
inline constexpr uint64_t kPageIsSwapped = 1u << 4;
inline constexpr uint64_t kPageIsPfnZero = 1u << 5;
inline constexpr uint64_t kPageIsHuge = 1u << 6;
inline constexpr uint64_t kPageIsSoftDirty = 1u << 7;
inline constexpr uint64_t kPageIsGuard = 1u << 8;

struct PmPageRegion {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

struct PmScanArg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};
static_assert(sizeof(PmScanArg) == 96);

inline constexpr unsigned long kPagemapScanIoctl = _IOWR('f', 16, PmScanArg);
// struct pm_scan_arg flags (include/uapi/linux/fs.h, 6.7).
inline constexpr uint64_t kPmScanWpMatching = 1u << 0;
inline constexpr uint64_t kPmScanCheckWpAsync = 1u << 1;

// Raw /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
inline constexpr uint64_t kPmPresent = 1ull << 63;
inline constexpr uint64_t kPmSwap = 1ull << 62;
inline constexpr uint64_t kPmFileOrSharedAnon = 1ull << 61;
inline constexpr uint64_t kPmGuardRegion = 1ull << 58;  // 6.15+

// One PAGEMAP_SCAN walk over [start, end) (resumed until the end when the output fills), with
// the raw flags and masks of struct pm_scan_arg. Calls `fn` for each region, in address order,
// never twice for a page (a resumed walk can hand back pages already reported).
Status pagemap_scan_walk(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t inverted,
                         uint64_t mask, uint64_t anyof, uint64_t ret,
                         const std::function<void(uint64_t, uint64_t, uint64_t)>& fn);

class PagemapScanner {
public:
    // Opens /proc/PID/pagemap. With `use_ioctl` false (or a kernel without PAGEMAP_SCAN) the
    // raw pagemap words are read instead; the zero page cannot be recognised that way (no
    // PFNZERO), so callers must still check page contents.
    static Expected<PagemapScanner> open(pid_t pid, bool use_ioctl);

    // Page runs in [start, end) that have any category of `anyof` and none of `exclude`, in
    // address order, adjacent pages with the same categories (restricted to `report`) merged.
    Expected<std::vector<PmPageRegion>> scan(uint64_t start, uint64_t end, uint64_t anyof, uint64_t exclude,
                                             uint64_t report);

    bool using_ioctl() const { return use_ioctl_; }

private:
    PagemapScanner(pid_t pid, UniqueFd fd, bool use_ioctl) : pid_(pid), fd_(std::move(fd)), use_ioctl_(use_ioctl) {}
    Expected<std::vector<PmPageRegion>> scan_ioctl(uint64_t start, uint64_t end, uint64_t anyof, uint64_t exclude,
                                                   uint64_t report);
    Expected<std::vector<PmPageRegion>> scan_raw(uint64_t start, uint64_t end, uint64_t anyof, uint64_t exclude,
                                                 uint64_t report);

    pid_t pid_;
    UniqueFd fd_;
    bool use_ioctl_;
    bool guard_known_ = true;  // false once the kernel refused PAGE_IS_GUARD (before 6.15)
};

}  // namespace criu
