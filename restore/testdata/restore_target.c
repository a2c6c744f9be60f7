// Workload for restore tests: a process whose state is easy to break and cheap to verify.
//   - main thread: heap counter and pattern, a private anonymous mapping, a stack array, a
//     SIGUSR1 handler, a POSIX timer and an itimer that keep ticking;
//   - worker 1: TLS marker (fs_base), counter;
//   - worker 2: AVX-512 state: zmm16/zmm31 loaded once with a per-lane pattern and checked
//     after every sleep, with only raw syscalls in between (glibc's string functions may use
//     zmm16-31 legitimately).
// Every 50 ms main appends one line to stdout:
//   tick N heap=H t1=A t2=B usr1=U alrm=R ptimer=P zmm=ok tls=ok mem=ok alt=ok shm=ok
//   - worker 1 also has a name, nice 5, SCHED_BATCH and a sigaltstack it re-checks (alt=ok);
//   - SIGUSR2 is blocked everywhere, so a test can leave it pending (shared and per thread);
//   - a shared anonymous region mapped twice (one object, two addresses) and a shared mapping
//     of a file next to the stop file: writes through one mapping show through the other
//     (shm=ok);
//   - argv[2] may hold "seccomp" (no_new_privs and an allow-all seccomp filter) and "nobody"
//     (runs as uid/gid 65534 without capabilities).
// Creating the file named by argv[1] makes it join its threads and exit with status 7.
// Build: gcc -O2 -pthread restore_target.c -o restore_target
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static __thread int tls_marker;
static volatile long counter1, counter2;
static volatile int zmm_bad, tls_bad, alt_bad, stop;
static int threads_set_up;  // "ready" waits for both workers: the test fingerprints them at once
static volatile sig_atomic_t usr1, alrm, ptimer;

static const uint64_t zmm_pattern[16] = {
    0x0101010101010101ull, 0x0202020202020202ull, 0x0303030303030303ull, 0x0404040404040404ull,
    0x0505050505050505ull, 0x0606060606060606ull, 0x0707070707070707ull, 0x0808080808080808ull,
    0x1111111111111111ull, 0x2222222222222222ull, 0x3333333333333333ull, 0x4444444444444444ull,
    0x5555555555555555ull, 0x6666666666666666ull, 0x7777777777777777ull, 0x8888888888888888ull};

static void raw_sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    long ret;
    asm volatile("syscall" : "=a"(ret) : "0"(SYS_nanosleep), "D"(&ts), "S"(0) : "rcx", "r11", "memory");
}

static void* worker_tls(void* arg) {
    tls_marker = (int)(intptr_t)arg;
    pthread_setname_np(pthread_self(), "rt-tls");
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
    struct sched_param sp = {0};
    sched_setscheduler(0, SCHED_BATCH, &sp);  // this thread only
    stack_t ss = {.ss_sp = malloc(65536), .ss_flags = 0, .ss_size = 65536};
    sigaltstack(&ss, NULL);
    __atomic_add_fetch(&threads_set_up, 1, __ATOMIC_SEQ_CST);
    while (!stop) {
        if (tls_marker != (int)(intptr_t)arg)
            tls_bad = 1;
        stack_t now;
        if (sigaltstack(NULL, &now) != 0 || now.ss_sp != ss.ss_sp || now.ss_size != ss.ss_size ||
            now.ss_flags != 0)
            alt_bad = 1;
        counter1++;
        raw_sleep_ms(5);
    }
    return NULL;
}

__attribute__((target("avx512f"))) static void* worker_zmm(void* arg) {
    (void)arg;
    uint64_t out[16] __attribute__((aligned(64)));
    if (!__builtin_cpu_supports("avx512f")) {
        __atomic_add_fetch(&threads_set_up, 1, __ATOMIC_SEQ_CST);
        while (!stop) {
            raw_sleep_ms(5);
            counter2++;
        }
        return NULL;
    }
    asm volatile("vmovdqu64 %0, %%zmm31\n\tvmovdqu64 %1, %%zmm16"
                 :
                 : "m"(zmm_pattern[0]), "m"(zmm_pattern[8])
                 : "xmm31", "xmm16");
    __atomic_add_fetch(&threads_set_up, 1, __ATOMIC_SEQ_CST);
    while (!stop) {
        raw_sleep_ms(5);
        asm volatile("vmovdqu64 %%zmm31, %0\n\tvmovdqu64 %%zmm16, %1" : "=m"(out[0]), "=m"(out[8]));
        for (int i = 0; i < 16; i++)
            if (out[i] != zmm_pattern[i])
                zmm_bad = 1;
        counter2++;
    }
    return NULL;
}

static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_alrm(int sig) { (void)sig; alrm++; }
static void on_rt(int sig) { (void)sig; ptimer++; }

int main(int argc, char** argv) {
    const char* stop_file = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0);
    umask(027);
    signal(SIGUSR1, on_usr1);
    signal(SIGALRM, on_alrm);
    signal(SIGRTMIN + 2, on_rt);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);  // before the threads: they inherit it
    const char* mode = argc > 2 ? argv[2] : "";
    if (strstr(mode, "nobody")) {
        gid_t g = 65534;
        if (setgroups(1, &g) || setresgid(g, g, g) || setresuid(65534, 65534, 65534))
            return 4;
    }
    if (strstr(mode, "seccomp")) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {1, &allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
            return 3;
    }

    size_t heap_len = 3 << 20;  // above malloc's mmap threshold: a mapping of its own
    unsigned char* heap = malloc(64 << 10);
    for (size_t i = 0; i < (64 << 10); i++)
        heap[i] = (unsigned char)(i * 13);
    unsigned char* big = malloc(heap_len);  // mmap'ed by malloc
    for (size_t i = 0; i < heap_len; i += 4096)
        big[i] = (unsigned char)(i >> 12);
    unsigned char* anon = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < (1 << 20); i += 8192)  // every other page: the rest stays untouched
        anon[i] = (unsigned char)(i >> 13) | 1;
    unsigned char* ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(ro, 0x5a, 4096);
    mprotect(ro, 4096, PROT_READ);
    // One shared object at two addresses (mremap with old_size 0 duplicates a shared mapping).
    volatile unsigned char* shm = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    volatile unsigned char* shm2 = mremap((void*)shm, 0, 65536, MREMAP_MAYMOVE);
    char data_path[4096];
    snprintf(data_path, sizeof(data_path), "%s.data", stop_file);
    int dfd = open(data_path, O_RDWR | O_CREAT | O_TRUNC, 0666);
    if (dfd < 0 || ftruncate(dfd, 16384) || shm2 == MAP_FAILED)
        return 5;
    volatile unsigned char* fmap = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
    close(dfd);
    for (int i = 0; i < 16384; i++)
        fmap[i] = (unsigned char)(i * 7);
    volatile unsigned stack_arr[256];
    for (int i = 0; i < 256; i++)
        stack_arr[i] = (unsigned)i * 31u;

    pthread_t t1, t2;
    pthread_create(&t1, NULL, worker_tls, (void*)(intptr_t)4242);
    pthread_create(&t2, NULL, worker_zmm, NULL);

    struct itimerval it = {{0, 200000}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, NULL);
    timer_t tid;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN + 2;
    timer_create(CLOCK_MONOTONIC, &sev, &tid);
    struct itimerspec its = {{0, 100000000}, {0, 100000000}};
    timer_settime(tid, 0, &its, NULL);

    while (__atomic_load_n(&threads_set_up, __ATOMIC_SEQ_CST) < 2)
        usleep(1000);
    printf("ready pid=%d\n", getpid());
    long heap_counter = 0;
    for (long tick = 0;; tick++) {
        int mem_ok = 1;
        for (size_t i = 0; i < (64 << 10); i++)
            if (heap[i] != (unsigned char)(i * 13))
                mem_ok = 0;
        for (size_t i = 0; i < heap_len; i += 4096)
            if (big[i] != (unsigned char)(i >> 12))
                mem_ok = 0;
        for (size_t i = 0; i < (1 << 20); i += 4096)
            if (anon[i] != ((i % 8192) ? 0 : ((unsigned char)(i >> 13) | 1)))
                mem_ok = 0;
        for (int i = 0; i < 4096; i++)
            if (ro[i] != 0x5a)
                mem_ok = 0;
        for (int i = 0; i < 256; i++)
            if (stack_arr[i] != (unsigned)i * 31u)
                mem_ok = 0;
        int shm_ok = 1;
        shm[1000] = (unsigned char)tick;
        shm2[2000] = (unsigned char)(tick + 1);
        if (shm2[1000] != (unsigned char)tick || shm[2000] != (unsigned char)(tick + 1))
            shm_ok = 0;
        for (int i = 0; i < 16384; i++)
            if (fmap[i] != (unsigned char)(i * 7))
                shm_ok = 0;
        heap_counter++;
        void* p = malloc(1000 + (tick % 50) * 100);  // brk must still work
        free(p);
        printf("tick %ld heap=%ld t1=%ld t2=%ld usr1=%d alrm=%d ptimer=%d zmm=%s tls=%s mem=%s alt=%s shm=%s\n",
               tick, heap_counter, counter1, counter2, (int)usr1, (int)alrm, (int)ptimer, zmm_bad ? "BAD" : "ok",
               tls_bad ? "BAD" : "ok", mem_ok ? "ok" : "BAD", alt_bad ? "BAD" : "ok", shm_ok ? "ok" : "BAD");
        if (access(stop_file, F_OK) == 0) {
            stop = 1;
            pthread_join(t1, NULL);  // needs clear_child_tid restored for both threads
            pthread_join(t2, NULL);
            printf("joined\n");
            return 7;
        }
        usleep(50000);
    }
}
