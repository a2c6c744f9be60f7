/*
 * A process tree: depth 4, threads in several processes, a second session, process groups
 * (one joined from a sibling branch, one from a grandchild), a zombie, an orphan reparented to
 * the root (a child subreaper), and the child of a session leader that exited.
 *
 *   R (session + group leader, subreaper, 1 thread)
 *   |- S   setsid, 2 threads
 *   |  `- S1  own group in session S
 *   |     `- S2  in group S1, 1 thread
 *   |        `- S3  joins group S (its grandparent's)
 *   |- G   own group in R's session
 *   |  `- G1  in group G
 *   |- G2  joins group G (its sibling's)
 *   |- O   orphan: its parent A exited, R reaped A
 *   |- Y   its parent X called setsid, forked Y and exited: session X has no leader any more
 *   `- Z   zombie, exited with 42, never reaped until the end
 *
 * After the restore every process checks its pid, parent, group, session, a 256 KiB buffer
 * and that its threads run, passes SIGTERM to its children and reports through its exit
 * status; R prints PASS only if every child and the zombie reported as expected.
 * S2 holds s2.txt open: e2e.tree.restore-fails removes it after the dump and expects the
 * restore to fail and to leave no process behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define BUF_SIZE (256 * 1024)
#define MAX_KIDS 8
#define MAX_THREADS 2

struct self {
    const char *name;
    pid_t pid, ppid, pgid, sid;
    uint8_t *buf;
    pid_t kids[MAX_KIDS];
    int nkids;
    int nthreads;
    pthread_t threads[MAX_THREADS];
};

static struct self me;
static volatile uint64_t ticks[MAX_THREADS];
static int ready_w = -1, ready_r = -1;

static void *spin(void *arg) {
    volatile uint64_t *t = arg;
    for (;;) {
        (*t)++;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The state to find again after the restore, recorded once the process is where it belongs. */
static void record(const char *name, int nthreads) {
    me.name = name;
    me.pid = getpid();
    me.ppid = getppid();
    me.pgid = getpgrp();
    me.sid = getsid(0);
    me.buf = malloc(BUF_SIZE);
    if (!me.buf)
        zdtm_fail("%s: malloc", name);
    zdtm_fill(me.buf, BUF_SIZE, (uint32_t)me.pid);
    me.nthreads = nthreads;
    /* SIGTERM is for the main thread, which waits for it in sigsuspend. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old);
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&me.threads[i], NULL, spin, (void *)&ticks[i]) != 0)
            zdtm_fail("%s: pthread_create", name);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void say_ready(void) {
    char c = 1;
    if (write(ready_w, &c, 1) != 1)
        zdtm_fail("%s: writing to the ready pipe: %s", me.name, strerror(errno));
    close(ready_w);
}

static void verify_self(void) {
    ZDTM_CHECK(getpid() == me.pid, "%s: pid %d, expected %d", me.name, getpid(), me.pid);
    ZDTM_CHECK(getppid() == me.ppid, "%s (pid %d): parent %d, expected %d", me.name, me.pid, getppid(), me.ppid);
    ZDTM_CHECK(getpgrp() == me.pgid, "%s (pid %d): group %d, expected %d", me.name, me.pid, getpgrp(), me.pgid);
    ZDTM_CHECK(getsid(0) == me.sid, "%s (pid %d): session %d, expected %d", me.name, me.pid, getsid(0), me.sid);
    long bad = zdtm_check(me.buf, BUF_SIZE, (uint32_t)me.pid);
    ZDTM_CHECK(bad < 0, "%s (pid %d): memory differs at offset %ld", me.name, me.pid, bad);
    for (int i = 0; i < me.nthreads; i++) {
        uint64_t before = ticks[i];
        for (int n = 0; n < 200 && ticks[i] == before; n++) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        ZDTM_CHECK(ticks[i] != before, "%s (pid %d): thread %d does not run", me.name, me.pid, i);
    }
}

/* SIGTERM to every child, then each must exit with 0 (it verified itself). */
static int verify_kids(void) {
    int bad = 0;
    for (int i = 0; i < me.nkids; i++)
        kill(me.kids[i], SIGTERM);
    for (int i = 0; i < me.nkids; i++) {
        int st;
        if (waitpid(me.kids[i], &st, 0) != me.kids[i]) {
            zdtm_msg("%s: waitpid(%d): %s", me.name, me.kids[i], strerror(errno));
            bad++;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            zdtm_msg("%s: child %d ended with status %#x", me.name, me.kids[i], st);
            bad++;
        }
    }
    return bad;
}

/* A member of the tree after its setup: waits for SIGTERM, verifies, passes it on. */
static void member_main(void) {
    say_ready();
    zdtm_wait();
    verify_self();
    exit(verify_kids() ? 1 : 0);
}

typedef void (*role_fn)(void);

static pid_t spawn(role_fn fn) {
    pid_t p = fork();
    if (p < 0)
        zdtm_fail("fork: %s", strerror(errno));
    if (p == 0) {
        close(ready_r);
        me.nkids = 0;
        me.nthreads = 0;
        fn();
        exit(0);
    }
    me.kids[me.nkids++] = p;
    return p;
}

static pid_t s_pid, g_pid, root_pid;

static void role_s3(void) {
    if (setpgid(0, s_pid) != 0)
        zdtm_fail("S3: setpgid(0, %d): %s", s_pid, strerror(errno));
    record("S3", 0);
    member_main();
}

static void role_s2(void) {
    /* A file only S2 has open: the restore-fails mode removes it after the dump, so that
     * the restore fails deep in the tree, after most processes exist. */
    if (open("s2.txt", O_RDWR | O_CREAT, 0600) < 0)
        zdtm_fail("S2: open s2.txt: %s", strerror(errno));
    record("S2", 1);
    spawn(role_s3);
    member_main();
}

static void role_s1(void) {
    setpgid(0, 0);
    record("S1", 0);
    spawn(role_s2);
    member_main();
}

static void role_s(void) {
    if (setsid() < 0)
        zdtm_fail("S: setsid: %s", strerror(errno));
    s_pid = getpid();
    record("S", 2);
    spawn(role_s1);
    member_main();
}

static void role_g1(void) {
    record("G1", 0);
    member_main();
}

static void role_g(void) {
    setpgid(0, 0);
    record("G", 0);
    spawn(role_g1);
    member_main();
}

static void role_g2(void) {
    if (setpgid(0, g_pid) != 0)
        zdtm_fail("G2: setpgid(0, %d): %s", g_pid, strerror(errno));
    record("G2", 0);
    member_main();
}

/* Waits until the process has been reparented to the root (its parent exited). */
static void wait_adopted(const char *name) {
    for (int n = 0; getppid() != root_pid; n++) {
        if (n > 10000)
            zdtm_fail("%s: never reparented to the root %d", name, root_pid);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void role_o(void) {
    wait_adopted("O");
    record("O", 0);
    member_main();
}

static void role_a(void) {
    spawn(role_o);
    exit(0);
}

static void role_y(void) {
    wait_adopted("Y");
    record("Y", 1);
    member_main();
}

static void role_x(void) {
    if (setsid() < 0)
        zdtm_fail("X: setsid: %s", strerror(errno));
    spawn(role_y);
    exit(0);
}

static char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        zdtm_fail("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    root_pid = getpid();
    int ready[2];
    if (pipe(ready) != 0)
        zdtm_fail("pipe: %s", strerror(errno));
    ready_r = ready[0];
    ready_w = ready[1];

    record("R", 1);
    spawn(role_s);
    g_pid = spawn(role_g);
    setpgid(g_pid, g_pid); /* before G2 needs it, whichever runs first */
    spawn(role_g2);
    /* A and X exit at once; their children O and Y come back to R as orphans. */
    pid_t a = spawn(role_a), x = spawn(role_x);
    me.nkids -= 2;
    pid_t z = fork();
    if (z == 0)
        _exit(42);
    /* Every member but A, X and Z says ready once: S S1 S2 S3 G G1 G2 O Y. */
    close(ready[1]);
    int expect = 9;
    for (int got = 0; got < expect;) {
        char c;
        ssize_t n = read(ready[0], &c, 1);
        if (n == 1)
            got++;
        else if (n == 0)
            zdtm_fail("R: the ready pipe closed after %d of %d members", got, expect);
        else if (errno != EINTR)
            zdtm_fail("R: reading the ready pipe: %s", strerror(errno));
    }
    close(ready[0]);
    int st;
    if (waitpid(a, &st, 0) != a || waitpid(x, &st, 0) != x)
        zdtm_fail("R: reaping A and X: %s", strerror(errno));
    /* O and Y are R's children now: found in /proc/self/task/R/children. */
    char path[64], kids[512] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", root_pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(kids, 1, sizeof(kids) - 1, f) : 0;
    if (f)
        fclose(f);
    kids[n] = 0;
    for (char *tok = strtok(kids, " \n"); tok; tok = strtok(NULL, " \n")) {
        pid_t k = atoi(tok);
        int known = k == z;
        for (int i = 0; i < me.nkids; i++)
            known |= me.kids[i] == k;
        if (!known && me.nkids < MAX_KIDS)
            me.kids[me.nkids++] = k;
    }
    ZDTM_CHECK(me.nkids == 5, "R: %d children besides the zombie, expected 5 (S G G2 O Y)", me.nkids);
    for (int i = 0; proc_state(z) != 'Z'; i++) {
        if (i > 10000)
            zdtm_fail("R: the zombie %d never exited", z);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    zdtm_wait_tree_suspended();
    zdtm_ready();
    zdtm_wait();

    verify_self();
    ZDTM_CHECK(proc_state(z) == 'Z', "R: pid %d is no longer a zombie (state %c)", z, proc_state(z));
    int bad = verify_kids();
    if (waitpid(z, &st, 0) != z)
        zdtm_fail("R: reaping the zombie %d: %s", z, strerror(errno));
    ZDTM_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42, "R: zombie %d had status %#x, expected exit 42", z, st);
    ZDTM_CHECK(bad == 0, "R: %d children failed", bad);
    zdtm_pass();
}
