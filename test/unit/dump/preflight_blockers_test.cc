// `criu dump --dry-run` (preflight) lists every blocker of a process at once, without stopping
// it, and a real dump refuses with the same message before it freezes anything.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include <fmt/format.h>

#include "criu/dump/dump.h"

using namespace criu;

namespace {

// What the child managed to create: kind -> fd (-1: the kernel refused, the check is skipped).
struct Blockers {
    int io_uring = -1, uffd = -1, perf = -1, bpf_map = -1, fanotify = -1, pidfd = -1, flock_fd = -1;
    int shm_id = -1;
};

int make_bpf_map() {
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 4;
    return int(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

int make_perf() {
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    return int(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

// Forks a child holding one of each blocker; returns its pid once it reported what it made.
pid_t spawn(const std::string& dir, Blockers& b) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        Blockers c;
        io_uring_params params{};
        c.io_uring = int(syscall(SYS_io_uring_setup, 4, &params));
        c.uffd = int(syscall(SYS_userfaultfd, O_CLOEXEC));
        c.perf = make_perf();
        c.bpf_map = make_bpf_map();
        c.fanotify = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
        c.pidfd = int(syscall(SYS_pidfd_open, 1, 0));  // not ours: a restore cannot vouch for pid 1
        c.flock_fd = open((dir + "/locked").c_str(), O_RDWR | O_CREAT, 0600);
        if (c.flock_fd >= 0 && flock(c.flock_fd, LOCK_EX) != 0)
            c.flock_fd = -1;
        c.shm_id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (c.shm_id >= 0 && shmat(c.shm_id, nullptr, 0) == reinterpret_cast<void*>(-1))
            c.shm_id = -1;
        if (c.shm_id >= 0)
            shmctl(c.shm_id, IPC_RMID, nullptr);  // gone with us
        if (write(p[1], &c, sizeof c) != ssize_t(sizeof c))
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    REQUIRE(read(p[0], &b, sizeof b) == ssize_t(sizeof b));
    close(p[0]);
    return pid;
}

char state_of(pid_t pid) {
    std::string path = fmt::format("/proc/{}/stat", pid);
    FILE* f = fopen(path.c_str(), "r");
    if (!f)
        return '?';
    char buf[1024] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    const char* rp = strrchr(buf, ')');
    return n && rp ? rp[2] : '?';
}

// A child that has just said it is ready may still be on its way into pause(): the checks
// below ("never stopped") compare against the sleeping state, so wait for it first.
bool wait_sleeping(pid_t pid) {
    for (int i = 0; i < 2000; ++i) {
        if (state_of(pid) == 'S')
            return true;
        usleep(10000);
    }
    return false;
}

}  // namespace

TEST_CASE("dry run lists every blocker of a process without stopping it; a real dump refuses the same way") {
    std::string dir = fmt::format("/tmp/criu-unit-blockers-{}", getpid());
    std::filesystem::create_directories(dir);
    Blockers b;
    pid_t pid = spawn(dir, b);
    REQUIRE(wait_sleeping(pid));

    Options opts;
    opts.pid = pid;
    opts.images_dir = dir + "/img";
    opts.dry_run = true;
    Log log(0);
    Status st = run_dump(opts, log);
    REQUIRE_FALSE(st);
    std::string msg = st.error().str();
    INFO(msg);
    auto expect = [&](int fd, const std::string& what) {
        if (fd >= 0)
            CHECK_THAT(msg, Catch::Contains(fmt::format("pid {} fd {}: {}", pid, fd, what)));
    };
    expect(b.io_uring, "io_uring instances cannot be checkpointed");
    expect(b.uffd, "userfaultfd (");
    expect(b.perf, "perf events cannot be checkpointed");
    expect(b.bpf_map, "BPF maps cannot be checkpointed");
    expect(b.fanotify, "fanotify instance (");
    expect(b.pidfd, "pidfd of pid 1, which is neither");
    expect(b.flock_fd, fmt::format("holds a flock write lock on {}/locked; use --file-locks", dir));
    if (b.shm_id >= 0)
        CHECK_THAT(msg, Catch::Contains(fmt::format("System V shared memory segment {} of the host's IPC namespace",
                                                    b.shm_id)));
    // Never stopped, never traced.
    CHECK(state_of(pid) == 'S');
    CHECK_FALSE(std::filesystem::exists(opts.images_dir + "/inventory.img"));

    // The real dump: the same list, before the freeze, and nothing written.
    opts.dry_run = false;
    Status real = run_dump(opts, log);
    REQUIRE_FALSE(real);
    CHECK(real.error().str() == msg);
    CHECK(state_of(pid) == 'S');
    CHECK_FALSE(std::filesystem::exists(opts.images_dir + "/inventory.img"));

    // --file-locks lifts exactly that blocker.
    opts.file_locks = true;
    opts.dry_run = true;
    Status with_locks = run_dump(opts, log);
    REQUIRE_FALSE(with_locks);
    CHECK(with_locks.error().str().find("use --file-locks") == std::string::npos);

    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    std::filesystem::remove_all(dir);
}

TEST_CASE("dry run of a tree lists the blockers of every process in it") {
    // R forks A and B; each child opens an io_uring. R itself has no blocker.
    int info[2];
    REQUIRE(pipe(info) == 0);
    pid_t root = fork();
    REQUIRE(root >= 0);
    if (root == 0) {
        close(info[0]);
        for (int i = 0; i < 2; i++) {
            pid_t c = fork();
            if (c == 0) {
                struct io_uring_params p;
                std::memset(&p, 0, sizeof p);
                int fd = int(syscall(__NR_io_uring_setup, 4, &p));
                int msg[2] = {getpid(), fd};
                if (write(info[1], msg, sizeof msg) != sizeof msg)
                    _exit(1);
                for (;;)
                    pause();
            }
        }
        close(info[1]);
        for (;;)
            pause();
    }
    close(info[1]);
    int kids[2][2] = {{-1, -1}, {-1, -1}};
    // Whatever happens below, nothing of the tree outlives the test (a child left behind
    // would hold ctest's output pipe open).
    struct KillTree {
        pid_t root;
        int (&kids)[2][2];
        ~KillTree() {
            for (auto& k : kids)
                if (k[0] > 0)
                    kill(k[0], SIGKILL);
            kill(root, SIGKILL);
            waitpid(root, nullptr, 0);
        }
    } cleanup{root, kids};
    size_t got = 0;
    while (got < sizeof kids) {
        ssize_t n = read(info[0], reinterpret_cast<char*>(kids) + got, sizeof kids - got);
        if (n <= 0)
            break;
        got += size_t(n);
    }
    close(info[0]);
    REQUIRE(got == sizeof kids);
    REQUIRE(wait_sleeping(root));
    for (auto& k : kids)
        REQUIRE(wait_sleeping(k[0]));

    Options opts;
    opts.pid = root;
    opts.images_dir = fmt::format("/tmp/criu-unit-tree-blockers-{}", getpid());
    opts.dry_run = true;
    Log log(0);
    Status st = run_dump(opts, log);
    REQUIRE_FALSE(st);
    std::string msg = st.error().str();
    INFO(msg);
    CHECK_THAT(msg, Catch::Contains(fmt::format("the tree of pid {} (3 processes) cannot be dumped", root)));
    for (auto& k : kids)
        if (k[1] >= 0)
            CHECK_THAT(msg, Catch::Contains(fmt::format("pid {} fd {}: io_uring instances cannot be checkpointed",
                                                        k[0], k[1])));
    for (auto& k : kids)
        CHECK(state_of(k[0]) == 'S');
    opts.dry_run = false;
    Status real = run_dump(opts, log);
    REQUIRE_FALSE(real);
    CHECK(real.error().str() == msg);
    CHECK(state_of(root) == 'S');

    std::filesystem::remove_all(opts.images_dir);
}
