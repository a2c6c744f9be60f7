#define _GNU_SOURCE
#include "zdtm.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
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

/* Appends the children of every thread of `pid` to `out` (up to `max`). */
static int children_of(int pid, int *out, int n, int max) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return n;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char cpath[320], buf[4096];
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", pid, e->d_name);
        FILE *f = fopen(cpath, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = 0;
        for (char *tok = strtok(buf, " \n"); tok && n < max; tok = strtok(NULL, " \n"))
            out[n++] = atoi(tok);
    }
    closedir(d);
    return n;
}

static int suspended_or_gone(int pid) {
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    char st[512] = "";
    f = fopen(path, "r");
    if (f) {
        size_t l = fread(st, 1, sizeof(st) - 1, f);
        st[l] = 0;
        fclose(f);
    }
    char *p = strrchr(st, ')');
    if (p && p[1] && (p[2] == 'Z' || p[2] == 'X'))
        return 1;
    return atoi(buf) == SYS_rt_sigsuspend && buf[0] != '-';
}

void zdtm_wait_tree_suspended(void) {
    enum { MAX = 256 };
    for (int round = 0; round < 10000; round++) {
        int pids[MAX], n = children_of(getpid(), pids, 0, MAX);
        for (int i = 0; i < n; i++)
            n = children_of(pids[i], pids, n, MAX);
        int all = 1;
        for (int i = 0; i < n && all; i++)
            all = suspended_or_gone(pids[i]);
        if (all)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
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
