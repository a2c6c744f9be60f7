#include "criu/core/assert.h"

#include <execinfo.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace criu {

void assert_fail(const char* expr, const char* file, int line, const char* func) {
    std::fprintf(stderr, "criu[%d]: assertion failed: %s at %s:%d (%s)\n", getpid(), expr, file, line, func);
    void* frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    std::abort();
}

}  // namespace criu
