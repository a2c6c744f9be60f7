// Small self-checking processes for the ptrace tests: each is forked from the test binary, runs a
// loop that verifies its own registers, FPU/AVX state, stack, signal mask and sigaltstack, and
// crashes (ud2) or exits non-zero the moment anything was disturbed.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace criu::test {

// Shared with the parent (MAP_SHARED): the victim bumps `counter` in its asm loop and `checks`
// after each successful check of its C-level state.
struct VictimShared {
    volatile uint64_t counter;
    volatile uint64_t checks;
    volatile int failed;  // which check failed, 0 if none
};

inline VictimShared* make_shared_area() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return static_cast<VictimShared*>(p);
}

// Keeps known values in rbx, r12-r15, xmm5, xmm6 and the upper half of ymm7 for `iterations`
// rounds, checking them every round; traps on any difference.
inline void victim_asm_spin(volatile uint64_t* counter, uint64_t iterations) {
    asm volatile(
        "mov $0x1111111111111111, %%rbx\n"
        "mov $0x2222222222222222, %%r12\n"
        "mov $0x3333333333333333, %%r13\n"
        "mov $0x4444444444444444, %%r14\n"
        "mov $0x5555555555555555, %%r15\n"
        "movq %%rbx, %%xmm5\n"
        "movq %%r12, %%xmm6\n"
        "vmovq %%r13, %%xmm0\n"
        "vinsertf128 $1, %%xmm0, %%ymm7, %%ymm7\n"
        "1:\n"
        "incq (%0)\n"
        "mov $0x1111111111111111, %%rax\n cmp %%rax, %%rbx\n jne 2f\n"
        "mov $0x2222222222222222, %%rax\n cmp %%rax, %%r12\n jne 2f\n"
        "mov $0x3333333333333333, %%rax\n cmp %%rax, %%r13\n jne 2f\n"
        "mov $0x4444444444444444, %%rax\n cmp %%rax, %%r14\n jne 2f\n"
        "mov $0x5555555555555555, %%rax\n cmp %%rax, %%r15\n jne 2f\n"
        "movq %%xmm5, %%rax\n cmp %%rbx, %%rax\n jne 2f\n"
        "movq %%xmm6, %%rax\n cmp %%r12, %%rax\n jne 2f\n"
        "vextractf128 $1, %%ymm7, %%xmm1\n movq %%xmm1, %%rax\n cmp %%r13, %%rax\n jne 2f\n"
        "dec %1\n"
        "jnz 1b\n"
        "jmp 3f\n"
        "2: ud2\n"
        "3:\n"
        : "+r"(counter), "+r"(iterations)
        :
        : "rax", "rbx", "r12", "r13", "r14", "r15", "xmm0", "xmm1", "xmm5", "xmm6", "xmm7", "memory", "cc");
}

inline void victim_usr1_handler(int, siginfo_t*, void*) {}

// The victim's main loop: sets up a sigaltstack, a signal mask and a SIGUSR1 handler, then
// alternates the asm register check with a check of that C-level state and of stack locals.
[[noreturn]] inline void victim_main(VictimShared* sh) {
    static char altstack[65536];
    stack_t ss{};
    ss.ss_sp = altstack;
    ss.ss_size = sizeof(altstack);
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = victim_usr1_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigaction(SIGUSR1, &sa, nullptr);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, SIGWINCH);
    sigprocmask(SIG_SETMASK, &mask, nullptr);
    volatile uint64_t stack_canary[32];
    for (int i = 0; i < 32; ++i)
        stack_canary[i] = 0xabcdef00u + i;
    for (;;) {
        victim_asm_spin(&sh->counter, 2000000);
        stack_t cur{};
        sigaltstack(nullptr, &cur);
        if (cur.ss_sp != altstack || cur.ss_size != sizeof(altstack) || cur.ss_flags != 0)
            sh->failed = 1;
        sigset_t now;
        sigprocmask(SIG_SETMASK, nullptr, &now);
        if (!sigismember(&now, SIGUSR2) || !sigismember(&now, SIGWINCH) || sigismember(&now, SIGUSR1))
            sh->failed = 2;
        for (int i = 0; i < 32; ++i)
            if (stack_canary[i] != 0xabcdef00u + i)
                sh->failed = 3;
        if (sh->failed)
            _exit(10 + sh->failed);
        sh->checks = sh->checks + 1;
    }
}

inline pid_t spawn_victim(VictimShared* sh) {
    pid_t p = fork();
    if (p == 0)
        victim_main(sh);
    // Wait until it is inside its loop.
    while (sh->counter == 0)
        usleep(1000);
    return p;
}

// Waits until the victim made `n` more C-level checks; false if it died or stalled (2 s).
inline bool victim_progresses(pid_t pid, VictimShared* sh, uint64_t n = 2) {
    uint64_t start = sh->checks;
    for (int i = 0; i < 2000; ++i) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return false;
        if (sh->checks >= start + n)
            return true;
        usleep(1000);
    }
    return false;
}

inline void kill_and_reap(pid_t pid) {
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

}  // namespace criu::test
