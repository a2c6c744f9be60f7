// Preflight lists every fd that cannot be dumped, naming pid, fd and kind, and leaves the
// process running.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

TEST_CASE("preflight refuses pidfds and sockets by pid, fd and kind while the process runs") {
    pid_t pid = spawn_ready_child([] {
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
            syscall(SYS_close_range, 3, kReadyFd - 1, 0) != 0 || syscall(SYS_close_range, kReadyFd + 1, ~0u, 0) != 0)
            return false;
        int sv[2];
        int p = static_cast<int>(syscall(SYS_pidfd_open, 1, 0));  // pid 1: neither us nor our child
        int n = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC));
        if (p < 0 || !place(p, 6) || n < 0 || !place(n, 7) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 ||
            !place(sv[0], 8) || !place(sv[1], 9))
            return false;
        // fd 0 in flight from fd 9 to fd 8: SCM_RIGHTS not received yet.
        alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
        char byte = 'x';
        iovec iov{&byte, 1};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        int zero = 0;
        memcpy(CMSG_DATA(c), &zero, sizeof zero);
        return sendmsg(9, &m, 0) == 1;
    });
    REQUIRE(pid > 0);
    Options opts;
    Log log(0);
    auto st = preflight_fds(pid, opts, log);
    REQUIRE_FALSE(st);
    std::string msg = st.error().str();
    CHECK_THAT(msg, Catch::Contains(fmt::format("3 of the 7 fds of pid {} cannot be dumped", pid)));
    CHECK_THAT(msg, Catch::Contains(fmt::format("pid {} fd 6: pidfd of pid 1, which is neither the process itself "
                                                "nor its child", pid)));
    CHECK_THAT(msg, Catch::Contains(fmt::format("pid {} fd 7: userfaultfd (registered ranges", pid)));
    CHECK_THAT(msg, Catch::Contains(fmt::format("pid {} fd 8: unix socket has 1 file descriptor(s) in flight", pid)));
    CHECK(msg.find(fmt::format("pid {} fd 9", pid)) == std::string::npos);
    CHECK(msg.find("fd 0") == std::string::npos);

    // Nothing was stopped or taken from it.
    int status = 0;
    CHECK(waitpid(pid, &status, WNOHANG) == 0);
    CHECK(kill(pid, 0) == 0);

    // The dump itself refuses too, at the first blocker.
    TempDir images;
    FilesDumper dumper;
    auto d = dumper.dump_process_fds(pid, opts, log, images.fd());
    REQUIRE_FALSE(d);
    CHECK_THAT(d.error().str(), Catch::Contains(fmt::format("pid {} fd 6: pidfd", pid)));
    kill_child(pid);
}

TEST_CASE("preflight passes a process whose fds are all supported") {
    pid_t pid = spawn_ready_child([] {
        int null = open("/dev/null", O_RDWR);
        int p[2];
        return null >= 0 && dup2(null, 0) >= 0 && dup2(null, 1) >= 0 && dup2(null, 2) >= 0 &&
               syscall(SYS_close_range, 3, kReadyFd - 1, 0) == 0 && pipe(p) == 0;
    });
    REQUIRE(pid > 0);
    Options opts;
    Log log(0);
    auto st = preflight_fds(pid, opts, log);
    INFO((st ? "" : st.error().str()));
    CHECK(st);
    kill_child(pid);
}
