// Invariants: stay on in release builds, print where and a backtrace, then abort.
#pragma once

namespace criu {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* func);
}

#define CRIU_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) [[unlikely]]                                             \
            ::criu::assert_fail(#cond, __FILE__, __LINE__, __func__);         \
    } while (0)
