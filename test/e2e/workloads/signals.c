/*
 * Signal state: a SIGUSR2 handler installed with SA_SIGINFO (and a mask), SIGUSR1
 * blocked and pending, a real-time signal with a value queued while blocked,
 * SIGPIPE ignored, and an alternate signal stack. After restore: the actions are
 * the same, both signals are still pending, and once unblocked they arrive with
 * their values, SIGUSR2's handler on the alternate stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "zdtm.h"

static volatile sig_atomic_t usr1_count, rt_count, usr2_count;
static volatile int rt_value;
static volatile int usr2_on_altstack;
static uint8_t altstack[65536];

static void on_usr1(int sig) {
    (void)sig;
    usr1_count++;
}

static void on_rt(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    rt_count++;
    rt_value = si->si_value.sival_int;
}

static void on_usr2(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)si;
    (void)uc;
    uint8_t here;
    usr2_on_altstack = (&here >= altstack && &here < altstack + sizeof(altstack));
    usr2_count++;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
    ZDTM_CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGHUP);
    ZDTM_CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction usr2");

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    ZDTM_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction usr1");

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    ZDTM_CHECK(sigaction(SIGRTMIN + 2, &sa, NULL) == 0, "sigaction rt");
    signal(SIGPIPE, SIG_IGN);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGRTMIN + 2);
    ZDTM_CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    raise(SIGUSR1);
    union sigval v = {.sival_int = 1234};
    ZDTM_CHECK(sigqueue(getpid(), SIGRTMIN + 2, v) == 0, "sigqueue");

    zdtm_ready();
    zdtm_wait();

    struct sigaction now;
    ZDTM_CHECK(sigaction(SIGUSR2, NULL, &now) == 0, "sigaction query");
    ZDTM_CHECK(now.sa_sigaction == on_usr2, "SIGUSR2 handler lost");
    ZDTM_CHECK((now.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_RESTART)) == (SA_SIGINFO | SA_ONSTACK | SA_RESTART),
               "SIGUSR2 flags lost: %#x", now.sa_flags);
    ZDTM_CHECK(sigismember(&now.sa_mask, SIGHUP), "SIGUSR2 mask lost");
    ZDTM_CHECK(sigaction(SIGPIPE, NULL, &now) == 0 && now.sa_handler == SIG_IGN, "SIGPIPE no longer ignored");

    stack_t cur;
    ZDTM_CHECK(sigaltstack(NULL, &cur) == 0, "sigaltstack query");
    ZDTM_CHECK(cur.ss_sp == altstack && cur.ss_size == sizeof(altstack), "alternate stack lost");

    sigset_t mask, pend;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    ZDTM_CHECK(sigismember(&mask, SIGUSR1) && sigismember(&mask, SIGRTMIN + 2), "blocked mask lost");
    sigpending(&pend);
    ZDTM_CHECK(sigismember(&pend, SIGUSR1), "pending SIGUSR1 lost");
    ZDTM_CHECK(sigismember(&pend, SIGRTMIN + 2), "pending real-time signal lost");
    ZDTM_CHECK(usr1_count == 0 && rt_count == 0, "a blocked signal was delivered");

    sigprocmask(SIG_UNBLOCK, &block, NULL);
    ZDTM_CHECK(usr1_count == 1, "SIGUSR1 delivered %d times", (int)usr1_count);
    ZDTM_CHECK(rt_count == 1 && rt_value == 1234, "real-time signal: count %d value %d", (int)rt_count, rt_value);

    raise(SIGUSR2);
    ZDTM_CHECK(usr2_count == 1 && usr2_on_altstack, "SIGUSR2 handler did not run on the alternate stack");
    zdtm_pass();
}
