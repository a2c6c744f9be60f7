/*
 * Semaphore undo adjustments (semop with SEM_UNDO) across a dump and restore. The root unshares
 * an IPC namespace and makes a set of 4 semaphores; two children change them with SEM_UNDO (one
 * also from a thread, whose undo list is the process's), so each child holds adjustments the
 * kernel applies when it exits: -8, +19000 (A); -1, -32000, +1 (B), near both ends of the
 * range. After the restore the root checks that the values are as at the dump (restoring the
 * adjustments must not move them), then ends A and B one after the other and checks after each
 * exit that exactly its adjustments were applied. Without them restored nothing would change.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define NSEMS 4

static int sem;

static void op(unsigned short num, short delta, const char *who) {
    struct sembuf b = {.sem_num = num, .sem_op = delta, .sem_flg = SEM_UNDO | IPC_NOWAIT};
    ZDTM_CHECK(semop(sem, &b, 1) == 0, "%s: semop %u %+d: %s", who, num, delta, strerror(errno));
}

static void *thread_op(void *arg) {
    (void)arg;
    op(0, 1, "A's thread");
    return NULL;
}

static void expect(const unsigned short *want, const char *when) {
    unsigned short v[NSEMS];
    ZDTM_CHECK(semctl(sem, 0, GETALL, v) == 0, "GETALL: %s", strerror(errno));
    for (int i = 0; i < NSEMS; i++)
        if (v[i] != want[i])
            zdtm_fail("%s: semaphore %d is %u, expected %u (values %u %u %u %u)", when, i, v[i], want[i], v[0], v[1],
                      v[2], v[3]);
}

/* A child: its semops, then "ready" on the pipe; it exits (applying its adjustments) once the
 * root writes to its stop pipe after the restore. */
static pid_t child(int ready_fd, int *stop_wr, void (*ops)(void)) {
    int sp[2];
    ZDTM_CHECK(pipe(sp) == 0, "pipe");
    pid_t c = fork();
    ZDTM_CHECK(c >= 0, "fork: %s", strerror(errno));
    if (c == 0) {
        close(sp[1]);
        ops();
        char x = 1;
        ZDTM_CHECK(write(ready_fd, &x, 1) == 1, "child: ready");
        ssize_t n;
        do
            n = read(sp[0], &x, 1);
        while (n < 0 && errno == EINTR);
        exit(n == 1 ? 0 : 3);
    }
    close(sp[0]);
    *stop_wr = sp[1];
    return c;
}

static void ops_a(void) {
    op(0, 7, "A");
    op(1, -19000, "A");
    pthread_t t;
    ZDTM_CHECK(pthread_create(&t, NULL, thread_op, NULL) == 0, "A: pthread_create");
    pthread_join(t, NULL);
}

static void ops_b(void) {
    op(1, 1, "B");
    op(2, 32000, "B");
    op(3, -1, "B");
}

static void end_child(pid_t c, int stop_wr, const char *name) {
    char x = 1;
    ZDTM_CHECK(write(stop_wr, &x, 1) == 1, "stop %s", name);
    int st;
    ZDTM_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s ended with status %#x", name,
               st);
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    ZDTM_CHECK(unshare(CLONE_NEWIPC) == 0, "unshare: %s", strerror(errno));
    sem = semget(IPC_PRIVATE, NSEMS, IPC_CREAT | 0600);
    ZDTM_CHECK(sem >= 0, "semget: %s", strerror(errno));
    unsigned short init[NSEMS] = {100, 20000, 5, 30000};
    ZDTM_CHECK(semctl(sem, 0, SETALL, init) == 0, "SETALL: %s", strerror(errno));

    int rp[2];
    ZDTM_CHECK(pipe(rp) == 0, "pipe");
    int stop_a, stop_b;
    pid_t a = child(rp[1], &stop_a, ops_a);
    pid_t b = child(rp[1], &stop_b, ops_b);
    char x;
    for (int i = 0; i < 2; i++)
        ZDTM_CHECK(read(rp[0], &x, 1) == 1, "a child did not get ready");
    const unsigned short dumped[NSEMS] = {108, 1001, 32005, 29999};
    expect(dumped, "before the dump");
    zdtm_ready();
    zdtm_wait();

    expect(dumped, "after the restore");
    end_child(a, stop_a, "A");
    const unsigned short after_a[NSEMS] = {100, 20001, 32005, 29999};
    expect(after_a, "after A exited (its undo: sem 0 -8, sem 1 +19000)");
    end_child(b, stop_b, "B");
    const unsigned short after_b[NSEMS] = {100, 20000, 5, 30000};
    expect(after_b, "after B exited (its undo: sem 1 -1, sem 2 -32000, sem 3 +1)");
    zdtm_msg("both children's undo adjustments applied at their exit");
    zdtm_pass();
}
