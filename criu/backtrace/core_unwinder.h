// libunwind-coredump over a SyntheticCore: one address space per process, one cursor
// per thread. Owns the UCD_info and the unw_addr_space_t and frees both on every path.
//
// Memory does not come from the core: the address space uses libunwind-coredump's
// accessors for registers, unwind tables and names, but its own access_mem, which
// reads pages on demand through a ReadPageFn (the images). Frames may be anywhere (a
// sigaltstack, a thread stack no register points into, a coroutine's heap block), and
// nothing has to be chosen, copied or capped in advance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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
    bool signal_frame = false;  // ip is the signal-return trampoline
};

struct UnwoundThread {
    std::vector<UnwoundFrame> frames;
    std::string error;  // empty if the outermost frame was reached
};

// Fills `dst` with the 4096 bytes at `page`; an error if the process had no readable
// memory there.
using ReadPageFn = std::function<Status(uint64_t page, char* dst)>;

class CoreUnwinder {
public:
    // `core` and the fds of `layout.files` must outlive the unwinder: libunwind reads the
    // core and reopens each backing file through /proc/self/fd.
    static Expected<CoreUnwinder> open(const SyntheticCore& core, const CoreLayout& layout, ReadPageFn read_page);

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
