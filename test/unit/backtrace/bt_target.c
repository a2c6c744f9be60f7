/* The program whose stack the backtrace tests unwind. Built with -g -O0
 * -fno-omit-frame-pointer so every level keeps a frame and a symbol.
 *
 *   bt_target            main -> level_one -> level_two -> level_three -> pause()
 *   bt_target threads    the same, plus a thread in
 *                        thread_main -> worker_outer -> worker_inner -> nanosleep()
 *
 * Writes "ready\n" to stdout once every thread is in place, then waits to be dumped
 * (or killed).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile int worker_in_place;

__attribute__((noinline)) static void worker_inner(void) {
    struct timespec ts = {1000, 0};
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
    if (argc > 1 && strcmp(argv[1], "threads") == 0) {
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
