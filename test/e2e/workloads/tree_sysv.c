/*
 * System V IPC shared by a tree: the parent unshares an IPC namespace, attaches a segment at a
 * fixed address and forks a child (which inherits the attach) and a semaphore set. After
 * restore both live in one restored namespace: the child sees the parent's segment content,
 * and its write and its semaphore operation are seen by the parent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define SIZE (64 * 1024)
#define ADDR ((void *)0x5b0000000000ull)

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    struct stat host; /* the namespace we were started in: the runner's and criu's */
    ZDTM_CHECK(stat("/proc/self/ns/ipc", &host) == 0, "stat ns: %s", strerror(errno));
    ZDTM_CHECK(unshare(CLONE_NEWIPC) == 0, "unshare: %s", strerror(errno));
    int id = shmget(IPC_PRIVATE, SIZE, IPC_CREAT | 0600);
    uint8_t *m = shmat(id, ADDR, 0);
    ZDTM_CHECK(m == ADDR, "shmat: %s", strerror(errno));
    zdtm_fill(m, SIZE - 4096, 5);
    int sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    ZDTM_CHECK(sem >= 0 && semctl(sem, 0, SETVAL, 0) == 0, "semget: %s", strerror(errno));

    int rp[2];
    ZDTM_CHECK(pipe(rp) == 0, "pipe");
    pid_t c = fork();
    if (c == 0) {
        close(rp[0]);
        char x = 1;
        ZDTM_CHECK(write(rp[1], &x, 1) == 1, "C: ready");
        zdtm_wait();
        long bad = zdtm_check(m, SIZE - 4096, 5);
        ZDTM_CHECK(bad < 0, "C: segment differs at %ld", bad);
        strcpy((char *)m + SIZE - 4096, "from the child");
        struct sembuf up = {.sem_num = 0, .sem_op = 1};
        ZDTM_CHECK(semop(sem, &up, 1) == 0, "C: semop: %s", strerror(errno));
        exit(0);
    }
    close(rp[1]);
    char x;
    ZDTM_CHECK(read(rp[0], &x, 1) == 1, "P: the child did not get ready");
    zdtm_ready();
    zdtm_wait();

    struct stat ipc;
    ZDTM_CHECK(stat("/proc/self/ns/ipc", &ipc) == 0 && ipc.st_ino != host.st_ino,
               "P: restored into the IPC namespace criu runs in (%lu)", (unsigned long)host.st_ino);
    struct shmid_ds ds;
    ZDTM_CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 2, "P: segment %d: nattch %lu (%s)", id,
               (unsigned long)ds.shm_nattch, strerror(errno));
    kill(c, SIGTERM);
    /* Waits for the child's semop in the restored set. */
    struct sembuf down = {.sem_num = 0, .sem_op = -1};
    ZDTM_CHECK(semop(sem, &down, 1) == 0, "P: semop: %s", strerror(errno));
    int st = 0;
    ZDTM_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "P: child status %#x", st);
    ZDTM_CHECK(strcmp((char *)m + SIZE - 4096, "from the child") == 0, "P: the child's write is not seen");
    zdtm_pass();
}
