/*
 * System V IPC in the process's own IPC namespace (it unshares one itself): a private
 * segment attached at a fixed address, a keyed segment attached read-only, a segment removed
 * (IPC_RMID) while attached, a message queue holding three messages and a semaphore set.
 * After restore: the same ids, keys, modes, contents and attach addresses, the messages in
 * order, the semaphore values, and the namespace is still not the host's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SEG_SIZE (96 * 1024)
#define FIXED_ADDR ((void *)0x5a0000000000ull)

struct msg {
    long mtype;
    char text[64];
};

static ino_t ns_ino(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    /* The namespace we were started in: the runner's, which is criu's. */
    ino_t host = ns_ino("/proc/self/ns/ipc");
    ZDTM_CHECK(host != 0, "stat /proc/self/ns/ipc: %s", strerror(errno));
    ZDTM_CHECK(unshare(CLONE_NEWIPC) == 0, "unshare(CLONE_NEWIPC): %s", strerror(errno));

    int priv = shmget(IPC_PRIVATE, SEG_SIZE, IPC_CREAT | 0600);
    ZDTM_CHECK(priv >= 0, "shmget private: %s", strerror(errno));
    uint8_t *a = shmat(priv, FIXED_ADDR, 0);
    ZDTM_CHECK(a == FIXED_ADDR, "shmat at a fixed address: %s", strerror(errno));
    zdtm_fill(a, SEG_SIZE, 11);
    memset(a + 32768, 0, 16384); /* a hole in the middle */

    int keyed = shmget(0x5eed, 8192, IPC_CREAT | 0640);
    ZDTM_CHECK(keyed >= 0, "shmget keyed: %s", strerror(errno));
    uint8_t *w = shmat(keyed, NULL, 0);
    zdtm_fill(w, 8192, 12);
    shmdt(w);
    uint8_t *ro = shmat(keyed, NULL, SHM_RDONLY);
    ZDTM_CHECK(ro != (void *)-1, "shmat read-only: %s", strerror(errno));

    int gone = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    uint8_t *g = shmat(gone, NULL, 0);
    ZDTM_CHECK(g != (void *)-1, "shmat gone");
    strcpy((char *)g, "removed but attached");
    ZDTM_CHECK(shmctl(gone, IPC_RMID, NULL) == 0, "IPC_RMID");

    int q = msgget(0xbeef, IPC_CREAT | 0620);
    ZDTM_CHECK(q >= 0, "msgget: %s", strerror(errno));
    for (int i = 1; i <= 3; i++) {
        struct msg m = {.mtype = i * 10};
        snprintf(m.text, sizeof(m.text), "message %d", i);
        ZDTM_CHECK(msgsnd(q, &m, strlen(m.text) + 1, 0) == 0, "msgsnd: %s", strerror(errno));
    }
    int s = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
    unsigned short vals[3] = {1, 5, 42};
    ZDTM_CHECK(s >= 0 && semctl(s, 0, SETALL, vals) == 0, "semaphores: %s", strerror(errno));

    zdtm_ready();
    zdtm_wait();

    ino_t now = ns_ino("/proc/self/ns/ipc");
    ZDTM_CHECK(now != 0 && now != host, "restored into the IPC namespace criu runs in");
    long bad = zdtm_check(a, 32768, 11);
    ZDTM_CHECK(bad < 0, "private segment differs at %ld", bad);
    for (int i = 32768; i < 32768 + 16384; i++)
        ZDTM_CHECK(a[i] == 0, "hole byte %d is %d", i, a[i]);
    uint8_t expect[SEG_SIZE];
    zdtm_fill(expect, SEG_SIZE, 11);
    ZDTM_CHECK(memcmp(a + 49152, expect + 49152, SEG_SIZE - 49152) == 0, "private segment tail differs");
    a[0] ^= 1; /* still writable */

    struct shmid_ds ds;
    ZDTM_CHECK(shmctl(priv, IPC_STAT, &ds) == 0 && ds.shm_segsz == SEG_SIZE && (ds.shm_perm.mode & 0777) == 0600 &&
                   ds.shm_nattch == 1,
               "private segment %d: IPC_STAT %s size %zu mode %o nattch %lu", priv, strerror(errno), ds.shm_segsz,
               ds.shm_perm.mode, (unsigned long)ds.shm_nattch);
    ZDTM_CHECK(shmget(0x5eed, 0, 0) == keyed, "key 0x5eed is segment %d, was %d", shmget(0x5eed, 0, 0), keyed);
    ZDTM_CHECK(shmctl(keyed, IPC_STAT, &ds) == 0 && (ds.shm_perm.mode & 0777) == 0640, "keyed segment mode %o",
               ds.shm_perm.mode);
    ZDTM_CHECK(zdtm_check(ro, 8192, 12) < 0, "read-only attach content");
    ZDTM_CHECK(strcmp((char *)g, "removed but attached") == 0, "removed segment content");
    ZDTM_CHECK(shmctl(gone, IPC_STAT, &ds) == 0 && (ds.shm_perm.mode & SHM_DEST), "segment %d should be removed",
               gone);
    ZDTM_CHECK(shmdt(a) == 0, "shmdt of the fixed attach: %s", strerror(errno));

    ZDTM_CHECK(msgget(0xbeef, 0) == q, "key 0xbeef is queue %d, was %d", msgget(0xbeef, 0), q);
    for (int i = 1; i <= 3; i++) {
        struct msg m;
        ssize_t n = msgrcv(q, &m, sizeof(m.text), 0, IPC_NOWAIT);
        char want[64];
        snprintf(want, sizeof(want), "message %d", i);
        ZDTM_CHECK(n == (ssize_t)strlen(want) + 1 && m.mtype == i * 10 && strcmp(m.text, want) == 0,
                   "message %d: n %zd type %ld '%s'", i, n, m.mtype, n > 0 ? m.text : "");
    }
    unsigned short back[3];
    ZDTM_CHECK(semctl(s, 0, GETALL, back) == 0 && back[0] == 1 && back[1] == 5 && back[2] == 42,
               "semaphores %u %u %u", back[0], back[1], back[2]);
    struct sembuf op = {.sem_num = 2, .sem_op = -42, .sem_flg = IPC_NOWAIT};
    ZDTM_CHECK(semop(s, &op, 1) == 0, "semop: %s", strerror(errno));
    zdtm_pass();
}
