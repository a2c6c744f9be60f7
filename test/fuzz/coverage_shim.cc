// Edge coverage for libFuzzer from GCC-instrumented code.
//
// clang 14 cannot compile libstdc++ 12's <expected> (it lacks P0848, conditionally
// trivial special members), so the fuzz targets are built with GCC. GCC's
// -fsanitize-coverage=trace-pc calls __sanitizer_cov_trace_pc() at every basic block;
// libFuzzer 14 only prints "no longer supported" there. The build weakens that symbol in
// a copy of the runtime and this file supplies the real one: AFL-style edge hashing
// (previous block ^ current block) into an 8-bit counter table that libFuzzer is told
// about through the standard __sanitizer_cov_8bit_counters_init hook.
#include <cstddef>
#include <cstdint>

extern "C" void __sanitizer_cov_8bit_counters_init(uint8_t* start, uint8_t* stop);

namespace {

constexpr size_t kCounters = 1u << 16;
uint8_t g_counters[kCounters];
thread_local uintptr_t g_prev;

__attribute__((constructor)) void register_counters() {
    __sanitizer_cov_8bit_counters_init(g_counters, g_counters + kCounters);
}

}  // namespace

extern "C" __attribute__((no_sanitize("address", "undefined"))) void __sanitizer_cov_trace_pc() {
    auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    uintptr_t cur = (pc ^ (pc >> 16)) & (kCounters - 1);
    g_counters[cur ^ g_prev]++;
    g_prev = cur >> 1;  // shift: A->B and B->A are different edges
}
