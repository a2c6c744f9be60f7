#define _GNU_SOURCE
#include "zdtm.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t zdtm_stop;

static void on_term(int sig) {
    (void)sig;
    zdtm_stop = 1;
}

void zdtm_init(int argc, char **argv) {
    (void)argc;
    (void)argv;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0)
        zdtm_fail("sigaction(SIGTERM): %s", strerror(errno));
    setvbuf(stdout, NULL, _IOLBF, 0);
}

void zdtm_ready(void) {
    printf("READY %d\n", getpid());
    fflush(stdout);
}

void zdtm_wait(void) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigdelset(&old, SIGTERM);
    while (!zdtm_stop)
        sigsuspend(&old);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
}

void zdtm_pass(void) {
    printf("PASS\n");
    fflush(stdout);
    exit(0);
}

void zdtm_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

void zdtm_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

void zdtm_fill(void *buf, size_t len, uint32_t seed) {
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = zdtm_pattern(seed, i);
}

long zdtm_check(const void *buf, size_t len, uint32_t seed) {
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != zdtm_pattern(seed, i))
            return (long)i;
    return -1;
}
