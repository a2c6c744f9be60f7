#include "criu/dump/dump_context.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace criu {

namespace {

// The one piece of process-wide state in the dumper: a signal handler can reach nothing else.
volatile sig_atomic_t g_interrupt_signal = 0;

void on_interrupt(int sig) { g_interrupt_signal = sig; }

struct sigaction g_old_int;
struct sigaction g_old_term;
std::atomic<int> g_guards{0};

}  // namespace

InterruptGuard::InterruptGuard() {
    if (g_guards.fetch_add(1) != 0)
        return;
    g_interrupt_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a blocking wait returns EINTR, and the loop around it re-checks.
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
    if (g_guards.fetch_sub(1) != 1)
        return;
    sigaction(SIGINT, &g_old_int, nullptr);
    sigaction(SIGTERM, &g_old_term, nullptr);
}

int InterruptGuard::pending() { return g_interrupt_signal; }
void InterruptGuard::reset() { g_interrupt_signal = 0; }

DumpContext::DumpContext(const Options& o, Log& l, ImageDir d, kfc::KernelFeatures f)
    : opts(o), log(l), dir(std::move(d)), features(std::move(f)) {
    if (const char* p = std::getenv("CRIU_FAULT_INJECT"))
        fault_phase = p;
}

Status DumpContext::checkpoint(std::string_view phase) {
    if (int sig = InterruptGuard::pending())
        return failf(EINTR, "dump interrupted by signal {} ({}) before phase '{}'; rolled back", sig, strsignal(sig),
                     phase);
    if (!fault_phase.empty() && fault_phase == phase)
        return failf(EIO, "fault injected at phase '{}' (CRIU_FAULT_INJECT)", phase);
    log.debug("dump", "phase {}", phase);
    return {};
}

uint64_t micros_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace criu
