// System V IPC of a process's own IPC namespace: dumped from a child, recreated in another
// child's new namespace with the same ids and contents; hostile images refused.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "criu/ipc/sysv_ipc.h"

using namespace criu;

namespace {

struct Ids {
    int shm, msg, sem;
};

struct Msg {
    long mtype;
    char text[32];
};

}  // namespace

TEST_CASE("sysv ipc: dump a private IPC namespace and recreate it with the same ids") {
    std::string dir = fmt::format("/tmp/criu-unit-sysv-{}", getpid());
    std::filesystem::create_directories(dir);
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        Ids ids{-1, -1, -1};
        if (unshare(CLONE_NEWIPC) == 0) {
            // Ids other than the first ones, so that "same id" means something.
            for (int i = 0; i < 3; i++)
                shmctl(shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600), IPC_RMID, nullptr);
            ids.shm = shmget(0x1234, 3 * 4096, IPC_CREAT | 0640);
            auto* m = static_cast<char*>(shmat(ids.shm, nullptr, 0));
            std::strcpy(m + 4096, "page two");
            shmdt(m);
            ids.msg = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
            Msg a{7, "first"}, b{3, "second"};
            msgsnd(ids.msg, &a, 6, 0);
            msgsnd(ids.msg, &b, 7, 0);
            ids.sem = semget(0x77, 2, IPC_CREAT | 0666);
            unsigned short v[2] = {9, 0};
            semctl(ids.sem, 0, SETALL, v);
        }
        (void)!write(p[1], &ids, sizeof ids);
        pause();
        _exit(0);
    }
    close(p[1]);
    Ids ids{};
    REQUIRE(read(p[0], &ids, sizeof ids) == sizeof ids);
    close(p[0]);
    REQUIRE(ids.shm > 0);

    Log log(0);
    int dirfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(has_own_ipc_ns(pid));
    CHECK(*has_own_ipc_ns(pid));
    auto dumped = dump_sysv_ipc(pid, dirfd, log);
    INFO((dumped ? "" : dumped.error().str()));
    REQUIRE(dumped);
    CHECK(*dumped);
    CHECK(preflight_sysv_ipc(pid));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    // We share the host's namespace: nothing to dump.
    auto own = dump_sysv_ipc(getpid(), dirfd, log);
    REQUIRE(own);
    CHECK_FALSE(*own);

    auto r = SysvIpcRestorer::load(dirfd, log);
    INFO((r ? "" : r.error().str()));
    REQUIRE(r);
    REQUIRE(r->has_value());
    SysvIpcRestorer& ipc = **r;
    CHECK(ipc.has_segment(ids.shm));
    CHECK(ipc.image().queues(0).messages_size() == 2);

    pid_t c = fork();
    REQUIRE(c >= 0);
    if (c == 0) {
        if (!ipc.restore_in_child({}))
            _exit(2);
        if (shmget(0x1234, 0, 0) != ids.shm)
            _exit(3);
        auto* m = static_cast<char*>(shmat(ids.shm, nullptr, SHM_RDONLY));
        if (m == reinterpret_cast<void*>(-1) || std::strcmp(m + 4096, "page two") != 0 || m[0] != 0)
            _exit(4);
        shmid_ds ds{};
        if (shmctl(ids.shm, IPC_STAT, &ds) != 0 || (ds.shm_perm.mode & 0777) != 0640 || ds.shm_segsz != 3 * 4096)
            _exit(5);
        Msg got{};
        if (msgrcv(ids.msg, &got, sizeof got.text, 0, IPC_NOWAIT) != 6 || got.mtype != 7 ||
            std::strcmp(got.text, "first") != 0)
            _exit(6);
        if (msgrcv(ids.msg, &got, sizeof got.text, 0, IPC_NOWAIT) != 7 || got.mtype != 3)
            _exit(7);
        unsigned short v[2] = {};
        if (semget(0x77, 0, 0) != ids.sem || semctl(ids.sem, 0, GETALL, v) != 0 || v[0] != 9 || v[1] != 0)
            _exit(8);
        _exit(0);
    }
    int st = 0;
    REQUIRE(waitpid(c, &st, 0) == c);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    close(dirfd);
    std::filesystem::remove_all(dir);
}

TEST_CASE("sysv ipc: hostile namespace images are refused") {
    images::IpcNamespace ns;
    ns.set_shmmax("18446744073692774399");
    ns.set_shmall("18446744073692774399");
    ns.set_shmmni("4096");
    ns.set_msgmax("8192");
    ns.set_msgmnb("16384");
    ns.set_msgmni("32000");
    ns.set_sem("32000 1024000000 500 32000");
    CHECK(validate_ipc_namespace(ns));

    auto bad = ns;
    bad.set_shmmax("1; rm -rf /");
    CHECK_FALSE(validate_ipc_namespace(bad));

    bad = ns;
    auto* s = bad.add_shms();
    s->mutable_perm()->set_id(1);
    s->set_size(4096);
    s->set_content_file("../../etc/shadow");
    CHECK_FALSE(validate_ipc_namespace(bad));
    s->set_content_file("sysvshm-1.img");
    CHECK(validate_ipc_namespace(bad));
    *bad.add_shms() = *s;  // the same id twice
    CHECK_FALSE(validate_ipc_namespace(bad));

    bad = ns;
    auto* q = bad.add_queues();
    q->mutable_perm()->set_id(0);
    q->add_messages()->set_mtype(0);  // msgsnd refuses type 0
    CHECK_FALSE(validate_ipc_namespace(bad));

    bad = ns;
    auto* sem = bad.add_sems();
    sem->mutable_perm()->set_id(0);
    sem->add_values(40000);  // above SEMVMX
    CHECK_FALSE(validate_ipc_namespace(bad));
}
