/*
 * Threads inside system calls at the moment of the dump: one blocked in read() on
 * an empty pipe (must block again after restore and then get the data written by
 * the main thread), one in nanosleep(3 s) (must return 0 having slept no less than
 * asked: not an early EINTR, and not the whole time again).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

static int pipefd[2];
static char got[64];
static ssize_t got_len = -2;
static int got_errno;
static int sleep_ret = -2, sleep_errno;
static double slept;
static volatile int reader_in, sleeper_in;

static double now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *reader(void *arg) {
    (void)arg;
    reader_in = 1;
    got_len = read(pipefd[0], got, sizeof(got));
    got_errno = errno;
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    struct timespec req = {3, 0}, rem = {0, 0};
    double t0 = now_mono();
    sleeper_in = 1;
    sleep_ret = nanosleep(&req, &rem);
    sleep_errno = errno;
    slept = now_mono() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);
    ZDTM_CHECK(pipe(pipefd) == 0, "pipe");
    /* SIGTERM must reach the main thread, not interrupt the blocked ones. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    pthread_t r, s;
    ZDTM_CHECK(pthread_create(&r, NULL, reader, NULL) == 0, "pthread_create");
    ZDTM_CHECK(pthread_create(&s, NULL, sleeper, NULL) == 0, "pthread_create");
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
    while (!reader_in || !sleeper_in)
        usleep(1000);
    usleep(100 * 1000); /* let both enter the kernel */
    zdtm_ready();
    zdtm_wait();

    ZDTM_CHECK(got_len == -2, "reader returned early: %zd (%s)", got_len, strerror(got_errno));
    const char msg[] = "after-restore";
    ZDTM_CHECK(write(pipefd[1], msg, sizeof(msg)) == (ssize_t)sizeof(msg), "write pipe");
    pthread_join(r, NULL);
    ZDTM_CHECK(got_len == (ssize_t)sizeof(msg) && memcmp(got, msg, sizeof(msg)) == 0,
               "reader got %zd bytes (%s)", got_len, got_len < 0 ? strerror(got_errno) : "");
    pthread_join(s, NULL);
    ZDTM_CHECK(sleep_ret == 0, "nanosleep returned %d (%s)", sleep_ret, strerror(sleep_errno));
    ZDTM_CHECK(slept >= 2.999, "nanosleep slept only %.3f s", slept);
    zdtm_pass();
}
