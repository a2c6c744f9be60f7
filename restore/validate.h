// Phase 1 checks: every count, address and value the restore will act on, against itself and
// against this machine, before anything is created. A hostile or inconsistent image set is
// refused with a message naming the pid/tid, the image file, the record and the reason.
#pragma once

#include "criu/core/error.h"
#include "restore/host_info.h"
#include "restore/process_images.h"

namespace criu {

inline constexpr uint64_t kUserAddressEnd = 0x7ffffffff000ull;  // 47-bit user space
inline constexpr size_t kUserRegsSize = 27 * 8;                // struct user_regs_struct
inline constexpr size_t kMaxRestoreThreads = 16384;
inline constexpr size_t kMaxRestoreVmas = 262144;                     // well above vm.max_map_count

// Everything about one process that does not involve its pages.
Status validate_process(const images::Inventory& inv, const RestoredProcessImages& p, const HostInfo& host);

// Pieces, exposed for tests.
Status validate_threads(const RestoredProcessImages& p, const HostInfo& host);
Status validate_vmas(const RestoredProcessImages& p);
Status validate_vdso(const images::Inventory& inv, const RestoredProcessImages& p, const HostInfo& host);
Status validate_signals_and_timers(const RestoredProcessImages& p);
Status validate_task_misc(const RestoredProcessImages& p);

}  // namespace criu
