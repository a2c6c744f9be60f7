/*
 * The other fd kinds of one process: an eventfd (semaphore mode, count 5), an epoll
 * watching a pipe and the eventfd with distinct data, a signalfd for SIGUSR1, a
 * periodic timerfd, an inotify watch on the scratch directory and a sealed memfd.
 * After restore each one behaves as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "zdtm.h"

int main(int argc, char **argv) {
    zdtm_init(argc, argv);

    int efd = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
    ZDTM_CHECK(efd >= 0, "eventfd");

    int p[2];
    ZDTM_CHECK(pipe(p) == 0, "pipe");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1111};
    ZDTM_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "epoll add pipe");
    ev.data.u64 = 0x2222;
    ZDTM_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0, "epoll add eventfd");

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    int sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
    ZDTM_CHECK(sfd >= 0, "signalfd");

    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {.it_interval = {0, 100 * 1000 * 1000}, .it_value = {0, 100 * 1000 * 1000}};
    ZDTM_CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0, "timerfd_settime");

    int ino = inotify_init1(IN_NONBLOCK);
    int wd = inotify_add_watch(ino, ".", IN_CREATE);
    ZDTM_CHECK(wd > 0, "inotify_add_watch: %s", strerror(errno));

    int mfd = memfd_create("zdtm-memfd", MFD_ALLOW_SEALING);
    uint8_t content[12345];
    zdtm_fill(content, sizeof(content), 21);
    ZDTM_CHECK(write(mfd, content, sizeof(content)) == (ssize_t)sizeof(content), "memfd write");
    ZDTM_CHECK(fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) == 0, "seals");

    zdtm_ready();
    zdtm_wait();

    /* eventfd: semaphore reads of 1 from a count of 5. */
    uint64_t v = 0;
    ZDTM_CHECK(read(efd, &v, 8) == 8 && v == 1, "eventfd semaphore read gave %llu", (unsigned long long)v);

    /* epoll: the eventfd is ready (count 4), the pipe becomes ready once written. */
    struct epoll_event out[4];
    int n = epoll_wait(ep, out, 4, 1000);
    ZDTM_CHECK(n == 1 && out[0].data.u64 == 0x2222, "epoll saw %d events (data %#llx)", n,
               n > 0 ? (unsigned long long)out[0].data.u64 : 0ull);
    ZDTM_CHECK(write(p[1], "x", 1) == 1, "pipe write");
    n = epoll_wait(ep, out, 4, 1000);
    int saw_pipe = 0;
    for (int i = 0; i < n; i++)
        saw_pipe |= out[i].data.u64 == 0x1111;
    ZDTM_CHECK(saw_pipe, "epoll did not report the pipe");

    /* signalfd */
    raise(SIGUSR1);
    struct signalfd_siginfo si;
    ZDTM_CHECK(read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) && si.ssi_signo == SIGUSR1, "signalfd read");

    /* timerfd keeps firing. */
    uint64_t ticks = 0;
    ZDTM_CHECK(read(tfd, &ticks, 8) == 8 && ticks >= 1, "timerfd read");

    /* inotify: the same wd reports a new file. */
    int f = open("created-after-restore", O_CREAT | O_WRONLY, 0600);
    close(f);
    struct pollfd pfd = {.fd = ino, .events = POLLIN};
    ZDTM_CHECK(poll(&pfd, 1, 2000) == 1, "no inotify event");
    char buf[4096] __attribute__((aligned(8)));
    ssize_t got = read(ino, buf, sizeof(buf));
    ZDTM_CHECK(got >= (ssize_t)sizeof(struct inotify_event), "inotify read");
    struct inotify_event *ie = (struct inotify_event *)buf;
    ZDTM_CHECK(ie->wd == wd && (ie->mask & IN_CREATE), "inotify event wd %d mask %#x", ie->wd, ie->mask);

    /* memfd: content and seals. */
    uint8_t back[sizeof(content)];
    ZDTM_CHECK(pread(mfd, back, sizeof(back), 0) == (ssize_t)sizeof(back), "memfd read");
    ZDTM_CHECK(zdtm_check(back, sizeof(back), 21) < 0, "memfd content");
    ZDTM_CHECK(fcntl(mfd, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), "memfd seals %#x", fcntl(mfd, F_GET_SEALS));
    zdtm_pass();
}
