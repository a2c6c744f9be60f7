// The kinds table: which kind each fd gets (the first match wins), which are refused and why.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "criu/core/unique_fd.h"
#include "criu/files/fd_kind_table.h"
#include "files_test_util.h"

using namespace criu;

namespace {

// The kind of one of our own fds, and its refusal ("" if it is dumpable).
std::pair<std::string, std::string> kind_of(int fd) {
    auto pidfd = open_pidfd(getpid());
    REQUIRE(pidfd);
    auto v = inspect_target_fd(pidfd->get(), getpid(), fd);
    REQUIRE(v);
    const FdKindOps& k = classify_fd(*v);
    return {k.name, k.refusal ? k.refusal : ""};
}

}  // namespace

TEST_CASE("classify: ptys, netlink sockets and the other kinds of issue 4") {
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY));
    REQUIRE(master);
    REQUIRE(unlockpt(master.get()) == 0);
    UniqueFd slave(open(ptsname(master.get()), O_RDWR | O_NOCTTY));
    REQUIRE(slave);
    CHECK(kind_of(master.get()) == std::pair<std::string, std::string>{"pty master", ""});
    CHECK(kind_of(slave.get()) == std::pair<std::string, std::string>{"pty slave", ""});

    UniqueFd nl(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    REQUIRE(nl);
    CHECK(kind_of(nl.get()) == std::pair<std::string, std::string>{"netlink socket", ""});
    UniqueFd diag(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    REQUIRE(diag);
    CHECK(kind_of(diag.get()).first == "netlink socket");

    UniqueFd efd(eventfd(0, EFD_CLOEXEC));
    CHECK(kind_of(efd.get()).first == "eventfd");
    UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
    CHECK(kind_of(null.get()) == std::pair<std::string, std::string>{"character device", ""});
}

TEST_CASE("classify: kinds that cannot be checkpointed are refused with their reason") {
    UniqueFd uffd(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC)));
    if (uffd) {
        auto [name, why] = kind_of(uffd.get());
        CHECK(name == "userfaultfd");
        CHECK_THAT(why, Catch::Contains("cannot be checkpointed"));
    }
    io_uring_params p{};
    UniqueFd ring(static_cast<int>(syscall(SYS_io_uring_setup, 2, &p)));
    if (ring)
        CHECK(kind_of(ring.get()) ==
              std::pair<std::string, std::string>{"io_uring", "io_uring instances cannot be checkpointed"});
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
    REQUIRE(pidfd);
    CHECK(kind_of(pidfd.get()) == std::pair<std::string, std::string>{"pidfd", ""});  // of ourselves: dumpable
    // /dev/net/tun: reopening it gives a device attached to no interface.
    UniqueFd tun(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (tun)
        CHECK(kind_of(tun.get()).first == "stateful device");
}
