/* The program whose stack the backtrace tests unwind. Built with -g -O0
 * -fno-omit-frame-pointer so every level keeps a frame and a symbol.
 *
 *   bt_target            main -> level_one -> level_two -> level_three -> pause()
 *   bt_target threads    the same, plus a thread in
 *                        thread_main -> worker_outer -> worker_inner -> nanosleep()
 *   bt_target altstack   the same, but the thread sends itself SIGUSR1 from
 *                        worker_inner and sleeps in handler_inner on a sigaltstack:
 *                        its frames are split over two stacks.
 *
 * Writes "ready\n" to stdout once every thread is in place, then waits to be dumped
 * (or killed).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile int worker_in_place;
static int use_altstack;

__attribute__((noinline)) static void handler_inner(void) {
    struct timespec ts = {1000, 0};
    worker_in_place = 1;
    for (;;)
        nanosleep(&ts, NULL);
}

static void on_signal(int sig) {
    (void)sig;
    handler_inner();
}

__attribute__((noinline)) static void worker_inner(void) {
    struct timespec ts = {1000, 0};
    if (use_altstack) {
        /* A separate mapping, so nothing but the signal frame leads back to the
         * thread's own stack. */
        stack_t ss = {0};
        ss.ss_size = 1 << 16;
        ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_ONSTACK;
        if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
            _exit(4);
        pthread_kill(pthread_self(), SIGUSR1);
    }
    worker_in_place = 1;
    for (;;)
        nanosleep(&ts, NULL);
}

__attribute__((noinline)) static void worker_outer(void) {
    worker_inner();
}

static void* thread_main(void* arg) {
    (void)arg;
    worker_outer();
    return NULL;
}

__attribute__((noinline)) void level_three(void) {
    if (write(1, "ready\n", 6) != 6)
        _exit(3);
    for (;;)
        pause();
}

__attribute__((noinline)) void level_two(void) {
    level_three();
}

__attribute__((noinline)) void level_one(void) {
    level_two();
}

int main(int argc, char** argv) {
    use_altstack = argc > 1 && strcmp(argv[1], "altstack") == 0;
    if (argc > 1 && (strcmp(argv[1], "threads") == 0 || use_altstack)) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, NULL) != 0)
            return 2;
        while (!worker_in_place)
            usleep(1000);
        /* Let the worker get from the flag into nanosleep. */
        usleep(20000);
    }
    level_one();
    return 0;
}
