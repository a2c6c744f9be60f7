// Kernel ABI the probes need that the Debian 12 headers (Linux 6.1 UAPI) lack or
// spell inconsistently between glibc and linux/. Values are from the upstream UAPI
// headers of the kernel version noted next to each; layouts are fixed ABI.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace criu::kfc::abi {

// PAGEMAP_SCAN: criu/core/pagemap_scan.h. clone3: criu/core/clone3_args.h.

// --- raw /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) ---
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwap = 1ull << 62;
constexpr uint64_t kPmFileOrShared = 1ull << 61;
constexpr uint64_t kPmUffdWp = 1ull << 57;
constexpr uint64_t kPmSoftDirty = 1ull << 55;

// --- userfaultfd features newer than 6.1 (include/uapi/linux/userfaultfd.h) ---
constexpr uint64_t kUffdFeaturePagefaultFlagWp = 1u << 0;
constexpr uint64_t kUffdFeatureMissingShmem = 1u << 5;
constexpr uint64_t kUffdFeatureMinorShmem = 1u << 10;
constexpr uint64_t kUffdFeatureWpUnpopulated = 1u << 13;  // 6.4
constexpr uint64_t kUffdFeaturePoison = 1u << 14;         // 6.6
constexpr uint64_t kUffdFeatureWpAsync = 1u << 15;        // 6.7
constexpr uint64_t kUffdFeatureMove = 1u << 16;           // 6.8
constexpr int kUffdUserModeOnly = 1;                      // userfaultfd() flag, 5.11

// --- ptrace (include/uapi/linux/ptrace.h) ---
constexpr long kPtraceSeize = 0x4206;
constexpr long kPtraceInterrupt = 0x4207;
constexpr long kPtraceSeccompGetFilter = 0x420c;
constexpr long kPtraceGetRseqConfiguration = 0x420f;  // 5.13
constexpr int kPtraceEventStop = 128;

struct PtraceRseqConfiguration {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
};

// --- kcmp (include/uapi/linux/kcmp.h) ---
constexpr int kKcmpFile = 0;
constexpr int kKcmpEpollTfd = 7;  // 4.13
struct KcmpEpollSlot {
    uint32_t efd;
    uint32_t tfd;
    uint32_t toff;
};

// --- prctl (include/uapi/linux/prctl.h) ---
constexpr int kPrSetMm = 35;
constexpr int kPrSetMmMap = 14;
constexpr int kPrSetMmMapSize = 15;
struct PrctlMmMap {
    uint64_t start_code;
    uint64_t end_code;
    uint64_t start_data;
    uint64_t end_data;
    uint64_t start_brk;
    uint64_t brk;
    uint64_t start_stack;
    uint64_t arg_start;
    uint64_t arg_end;
    uint64_t env_start;
    uint64_t env_end;
    uint64_t auxv;  // user pointer
    uint32_t auxv_size;
    uint32_t exe_fd;
};
static_assert(sizeof(PrctlMmMap) == 104);

// --- namespaces (include/uapi/linux/sched.h) ---
constexpr int kCloneNewTime = 0x00000080;  // 5.6

// --- io_uring (include/uapi/linux/io_uring.h); only the size matters for setup ---
struct IoUringParams {
    uint32_t sq_entries;
    uint32_t cq_entries;
    uint32_t flags;
    uint32_t sq_thread_cpu;
    uint32_t sq_thread_idle;
    uint32_t features;
    uint32_t wq_fd;
    uint32_t resv[3];
    uint64_t sq_off[5];
    uint64_t cq_off[5];
};
static_assert(sizeof(IoUringParams) == 120);

}  // namespace criu::kfc::abi
