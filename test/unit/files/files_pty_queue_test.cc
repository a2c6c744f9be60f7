// pty_queue: the bytes waiting on a pty master are copied and stay queued, byte for byte; a
// full buffer is left alone; criu SIGKILLed while the guardian holds the bytes loses none.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "criu/core/unique_fd.h"
#include "criu/files/pty_queue.h"

using namespace criu;

namespace {

struct Pty {
    UniqueFd master, slave;
};

Pty open_pty() {
    Pty p;
    p.master.reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    REQUIRE(p.master);
    REQUIRE(unlockpt(p.master.get()) == 0);
    p.slave.reset(open(ptsname(p.master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
    REQUIRE(p.slave);
    return p;
}

int queued(int fd) {
    int n = -1;
    REQUIRE(ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

// The slave's bytes reach the master's buffer in a work item: wait for them (10 s at most).
void wait_queued(int fd, int want) {
    for (int i = 0; i < 10000 && queued(fd) < want; ++i)
        usleep(1000);
    REQUIRE(queued(fd) == want);
}

// Everything the master can read now, until it would block or reports EIO.
std::string drain(int fd) {
    std::string out;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
            return out;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return out;
        out.append(buf, size_t(n));
    }
}

}  // namespace

TEST_CASE("pty queue: copied as the master reads it and left in place", "[pty_queue]") {
    Pty p = open_pty();
    // Default termios: ONLCR turns "\n" into "\r\n" on the way to the master.
    REQUIRE(write(p.slave.get(), "one\ntwo", 7) == 7);
    wait_queued(p.master.get(), 8);
    auto copy = copy_pty_master_queue(p.master.get());
    REQUIRE(copy);
    CHECK(*copy == "one\r\ntwo");
    CHECK(queued(p.master.get()) == 8);
    CHECK(drain(p.master.get()) == "one\r\ntwo");

    auto empty = copy_pty_master_queue(p.master.get());
    REQUIRE(empty);
    CHECK(empty->empty());
}

TEST_CASE("pty queue: bytes left by a closed slave, then EIO as before", "[pty_queue]") {
    Pty p = open_pty();
    REQUIRE(write(p.slave.get(), "bye", 3) == 3);
    wait_queued(p.master.get(), 3);
    p.slave.reset();
    auto copy = copy_pty_master_queue(p.master.get());
    REQUIRE(copy);
    CHECK(*copy == "bye");
    char buf[8];
    CHECK(read(p.master.get(), buf, sizeof buf) == 3);
    CHECK(read(p.master.get(), buf, sizeof buf) == -1);
    CHECK(errno == EIO);
}

TEST_CASE("pty queue: a full read buffer is not touched", "[pty_queue]") {
    Pty p = open_pty();
    struct termios t;
    REQUIRE(tcgetattr(p.slave.get(), &t) == 0);
    cfmakeraw(&t);
    REQUIRE(tcsetattr(p.slave.get(), TCSANOW, &t) == 0);
    REQUIRE(fcntl(p.slave.get(), F_SETFL, O_NONBLOCK) == 0);
    std::string sent;
    for (int i = 0; i < 100000; ++i) {
        char c = char('a' + i % 26);
        if (write(p.slave.get(), &c, 1) != 1)
            break;
        sent += c;
    }
    REQUIRE(sent.size() > kPtyMasterQueueMax);
    wait_queued(p.master.get(), int(kPtyMasterQueueMax));
    auto copy = copy_pty_master_queue(p.master.get());
    REQUIRE_FALSE(copy);
    CHECK(copy.error().err() == ENOSPC);
    CHECK(queued(p.master.get()) == int(kPtyMasterQueueMax));
    std::string got;
    for (int i = 0; i < 10000 && got.size() < sent.size(); ++i) {
        got += drain(p.master.get());
        if (got.size() < sent.size())
            usleep(1000);
    }
    CHECK(got == sent);
}

TEST_CASE("pty queue: criu killed while the guardian holds the bytes loses none", "[pty_queue]") {
    Pty p = open_pty();
    REQUIRE(write(p.slave.get(), "kept\n", 5) == 5);
    wait_queued(p.master.get(), 6);
    // The child stands for criu: the guardian SIGKILLs it right after reading the queue.
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto r = copy_pty_master_queue(p.master.get(), PtyQueueOptions{.kill_parent_after_read = true});
        _exit(r ? 0 : 1);  // never reached: killed by its guardian
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    // The orphaned guardian puts the bytes back once it sees it was re-parented.
    wait_queued(p.master.get(), 6);
    CHECK(drain(p.master.get()) == "kept\r\n");
}

TEST_CASE("pty queue: put back at restore", "[pty_queue]") {
    Pty p = open_pty();
    REQUIRE(put_pty_master_queue(p.master.get(), std::string("a\r\nb\0c", 6)));
    CHECK(drain(p.master.get()) == std::string("a\r\nb\0c", 6));
    auto too_much = put_pty_master_queue(p.master.get(), std::string(kPtyMasterQueueMax + 1, 'x'));
    REQUIRE_FALSE(too_much);
    CHECK(too_much.error().err() == EINVAL);
    CHECK(queued(p.master.get()) == 0);
}
