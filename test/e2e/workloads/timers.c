/*
 * Timers: an interval itimer (ITIMER_REAL, 1 h, so it does not fire), an itimer
 * that fires (ITIMER_REAL is taken, so ITIMER_VIRTUAL on a busy loop is too slow to
 * rely on: use a POSIX timer), and two POSIX timers: a one-shot far away and a
 * periodic one (50 ms) whose signals are counted. After restore the timers keep
 * their ids, their remaining time is no more than before, and the periodic timer
 * still fires.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

static volatile sig_atomic_t ticks;

static void on_tick(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if (si->si_value.sival_int == 77)
        ticks++;
}

int main(int argc, char **argv) {
    zdtm_init(argc, argv);

    struct itimerval it = {.it_interval = {3600, 0}, .it_value = {3000, 0}};
    ZDTM_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_tick;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN + 1, &sa, NULL);

    timer_t far, periodic;
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN + 3; /* never fires during the test */
    ZDTM_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &far) == 0, "timer_create far");
    struct itimerspec farv = {.it_value = {5000, 0}};
    ZDTM_CHECK(timer_settime(far, 0, &farv, NULL) == 0, "timer_settime far");

    sev.sigev_signo = SIGRTMIN + 1;
    sev.sigev_value.sival_int = 77;
    ZDTM_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &periodic) == 0, "timer_create periodic");
    struct itimerspec per = {.it_interval = {0, 50 * 1000 * 1000}, .it_value = {0, 50 * 1000 * 1000}};
    ZDTM_CHECK(timer_settime(periodic, 0, &per, NULL) == 0, "timer_settime periodic");

    while (ticks < 2)
        pause();
    struct itimerval before_it;
    getitimer(ITIMER_REAL, &before_it);
    struct itimerspec before_far;
    timer_gettime(far, &before_far);

    zdtm_ready();
    zdtm_wait();

    struct itimerval after_it;
    ZDTM_CHECK(getitimer(ITIMER_REAL, &after_it) == 0, "getitimer");
    ZDTM_CHECK(after_it.it_interval.tv_sec == 3600, "itimer interval lost: %ld", (long)after_it.it_interval.tv_sec);
    ZDTM_CHECK(after_it.it_value.tv_sec > 0 && after_it.it_value.tv_sec <= before_it.it_value.tv_sec,
               "itimer value %ld (was %ld)", (long)after_it.it_value.tv_sec, (long)before_it.it_value.tv_sec);

    struct itimerspec after_far;
    ZDTM_CHECK(timer_gettime(far, &after_far) == 0, "timer_gettime on the old id: %s", strerror(errno));
    ZDTM_CHECK(after_far.it_value.tv_sec > 0 && after_far.it_value.tv_sec <= before_far.it_value.tv_sec,
               "far timer value %ld (was %ld)", (long)after_far.it_value.tv_sec, (long)before_far.it_value.tv_sec);

    struct itimerspec per_now;
    ZDTM_CHECK(timer_gettime(periodic, &per_now) == 0, "timer_gettime periodic");
    ZDTM_CHECK(per_now.it_interval.tv_nsec == 50 * 1000 * 1000, "periodic interval lost");

    int t0 = ticks;
    struct timespec wait = {0, 400 * 1000 * 1000};
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR)
        ;
    ZDTM_CHECK(ticks - t0 >= 3, "periodic timer fired %d times in 400 ms", ticks - t0);
    zdtm_pass();
}
