/*
 * A pidfd of the process itself (one blocking, one PIDFD_NONBLOCK). After restore both still
 * name it: fdinfo "Pid:" is our pid and pidfd_send_signal through each delivers to us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) { (void)sig; got_usr1++; }

static int fdinfo_pid(int fd) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    int pid = -2;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Pid: %d", &pid) == 1)
            break;
    if (f)
        fclose(f);
    return pid;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    signal(SIGUSR1, on_usr1);
    int a = (int)syscall(SYS_pidfd_open, getpid(), 0);
    int b = (int)syscall(SYS_pidfd_open, getpid(), O_NONBLOCK);
    ZDTM_CHECK(a >= 0 && b >= 0, "pidfd_open: %s", strerror(errno));

    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(fdinfo_pid(a) == getpid() && fdinfo_pid(b) == getpid(), "pidfds name %d/%d, we are %d",
               fdinfo_pid(a), fdinfo_pid(b), getpid());
    ZDTM_CHECK((fcntl(b, F_GETFL) & O_NONBLOCK) && !(fcntl(a, F_GETFL) & O_NONBLOCK), "PIDFD_NONBLOCK");
    ZDTM_CHECK(syscall(SYS_pidfd_send_signal, a, SIGUSR1, NULL, 0) == 0, "pidfd_send_signal: %s", strerror(errno));
    ZDTM_CHECK(syscall(SYS_pidfd_send_signal, b, SIGUSR1, NULL, 0) == 0, "pidfd_send_signal: %s", strerror(errno));
    ZDTM_CHECK(got_usr1 == 2, "%d SIGUSR1 delivered, expected 2", (int)got_usr1);
    zdtm_pass();
}
