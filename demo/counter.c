/* The demo workload: counts, and every 200 ms appends "tick N (pid P)" to its stdout. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct timespec step = {0, 200 * 1000 * 1000};
    for (unsigned long n = 0;; n++) {
        printf("tick %lu (pid %d)\n", n, getpid());
        nanosleep(&step, NULL);
    }
}
