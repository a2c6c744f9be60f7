// libunwind-coredump over a SyntheticCore: one address space per process, one cursor
// per thread. Owns the UCD_info and the unw_addr_space_t and frees both on every path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "criu/backtrace/synthetic_core.h"
#include "criu/core/error.h"

namespace criu {

struct UnwoundFrame {
    uint64_t ip = 0;
    uint64_t sp = 0;
    std::string symbol;  // demangled where it is a C++ name; empty if none found
    uint64_t symbol_offset = 0;
};

struct UnwoundThread {
    std::vector<UnwoundFrame> frames;
    std::string error;  // empty if the outermost frame was reached
};

class CoreUnwinder {
public:
    // `core` and the fds of `layout.files` must outlive the unwinder: libunwind reads the
    // core and reopens each backing file through /proc/self/fd.
    static Expected<CoreUnwinder> open(const SyntheticCore& core, const CoreLayout& layout);

    int thread_count() const;
    // Thread `index` in the order of CoreLayout::threads. Stops after `max_frames`.
    UnwoundThread unwind(int index, size_t max_frames);

    CoreUnwinder(CoreUnwinder&&) noexcept;
    CoreUnwinder& operator=(CoreUnwinder&&) noexcept;
    ~CoreUnwinder();

    struct State;

private:
    explicit CoreUnwinder(std::unique_ptr<State> s);
    std::unique_ptr<State> state_;
};

}  // namespace criu
