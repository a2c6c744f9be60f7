// epoll: targets with their events and data, a target dup'ed away from the number it was
// registered under (whose old number is free, or reused by another file), and an epoll
// watching another epoll; and the refusal of a target the process no longer has.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/epoll.h>
#include <linux/close_range.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

// Dumped child: pipe 10 (read, data queued) / 11, eventfd registered as 12 and now at 15,
// eventfd registered as 16 and now at 17, a third eventfd that reused 16 and was registered as
// 16 too (two entries with tfd 16: kcmp's toff tells them apart), epoll 13 watching all of
// them, epoll 14 watching epoll 13.
constexpr int kPipeRd = 10, kPipeWr = 11, kEvOld = 12, kEpoll = 13, kOuter = 14, kEvNow = 15, kEv2Old = 16,
              kEv2Now = 17;
constexpr uint64_t kPipeData = 0xA1A1, kEvData = 0xB2B2, kEv2Data = 0xD4D4, kEv3Data = 0xE5E5, kOuterData = 0xC3C3;

bool add(int ep, int fd, uint32_t events, uint64_t data) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool setup_epolls() {
    int p[2];
    if (!stdio_null_rest_closed() || pipe(p) != 0 || !place(p[0], kPipeRd) || !place(p[1], kPipeWr) ||
        !write_all(kPipeWr, "x"))
        return false;
    int e = eventfd(0, EFD_NONBLOCK), e2 = eventfd(0, EFD_NONBLOCK), ep = epoll_create1(0), outer = epoll_create1(0);
    if (e < 0 || e2 < 0 || ep < 0 || outer < 0 || !place(e, kEvOld) || !place(e2, kEv2Old) || !place(ep, kEpoll) ||
        !place(outer, kOuter))
        return false;
    if (!add(kEpoll, kPipeRd, EPOLLIN, kPipeData) || !add(kEpoll, kEvOld, EPOLLIN | EPOLLET, kEvData) ||
        !add(kEpoll, kEv2Old, EPOLLIN, kEv2Data) || !add(kOuter, kEpoll, EPOLLIN, kOuterData))
        return false;
    // Both eventfds move; 12 stays free, 16 is taken by another registered eventfd.
    if (dup2(kEvOld, kEvNow) < 0 || close(kEvOld) != 0 || dup2(kEv2Old, kEv2Now) < 0 || close(kEv2Old) != 0)
        return false;
    int e3 = eventfd(0, EFD_NONBLOCK);
    return e3 >= 0 && place(e3, kEv2Old) && add(kEpoll, kEv2Old, EPOLLIN, kEv3Data);
}

std::multiset<uint64_t> ready(int ep) {
    epoll_event evs[8];
    int n = epoll_wait(ep, evs, 8, 0);
    std::multiset<uint64_t> out;
    for (int i = 0; i < n; ++i)
        out.insert(evs[i].data.u64);
    return out;
}

}  // namespace

TEST_CASE("epoll: targets, events and data survive, including moved targets and an epoll in an epoll") {
    TempDir images;
    pid_t pid = spawn_ready_child(setup_epolls);
    REQUIRE(pid > 0);
    Log log(1);
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");

    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[kEpoll].has_epoll());
    const auto& ep = files[kEpoll].epoll();
    CHECK(ep.owner_pid() == pid);
    REQUIRE(ep.targets_size() == 4);
    std::map<uint64_t, images::EpollTarget> by_data;
    for (const auto& t : ep.targets())
        by_data[t.data()] = t;
    CHECK(by_data[kPipeData].fd() == kPipeRd);
    CHECK(by_data[kEvData].tfd() == kEvOld);
    CHECK(by_data[kEvData].fd() == kEvNow);  // found with kcmp(KCMP_EPOLL_TFD)
    CHECK((by_data[kEvData].events() & EPOLLET) != 0);
    CHECK(by_data[kEv2Data].tfd() == kEv2Old);
    CHECK(by_data[kEv2Data].fd() == kEv2Now);  // not the eventfd now at 16
    CHECK(by_data[kEv3Data].tfd() == kEv2Old);
    CHECK(by_data[kEv3Data].fd() == kEv2Old);
    REQUIRE(files[kOuter].epoll().targets_size() == 1);
    CHECK(files[kOuter].epoll().targets(0).fd() == kEpoll);

    std::string out = restore_and_check(images.fd(), pid, log, [] {
        // Only the pipe has something to read; the outer epoll sees the inner one ready.
        auto r = ready(kEpoll);
        expect(r == std::multiset<uint64_t>{kPipeData}, fmt::format("ready before: {}", r));
        r = ready(kOuter);
        expect(r == std::multiset<uint64_t>{kOuterData}, fmt::format("outer ready: {}", r));
        uint64_t one = 1;
        expect(write(kEvNow, &one, sizeof one) == sizeof one, "eventfd write");
        expect(write(kEv2Now, &one, sizeof one) == sizeof one, "second eventfd write");
        r = ready(kEpoll);
        expect(r == std::multiset<uint64_t>{kPipeData, kEvData, kEv2Data}, fmt::format("ready after: {}", r));
        // Edge-triggered: reported once.
        r = ready(kEpoll);
        expect(r == std::multiset<uint64_t>{kPipeData, kEv2Data}, fmt::format("ready again: {}", r));
        expect(write(kEv2Old, &one, sizeof one) == sizeof one, "third eventfd write");
        r = ready(kEpoll);
        expect(r == std::multiset<uint64_t>{kPipeData, kEv2Data, kEv3Data}, fmt::format("ready at last: {}", r));
        // Registered under its old, free number again (so fdinfo reads the same); that number
        // was only borrowed. 16 holds the third eventfd, so the second is registered as 17.
        std::string info = own_fdinfo(kEpoll);
        expect(info.find(fmt::format("tfd: {:>8} ", kEvOld)) != std::string::npos, "tfd 12 in " + info);
        expect(info.find(fmt::format("tfd: {:>8} ", kEv2Now)) != std::string::npos, "tfd 17 in " + info);
        expect(fcntl(kEvOld, F_GETFD) < 0 && errno == EBADF, "fd 12 must be closed again");
        // As before the dump, the entry is keyed by the old number: removing it by the
        // number the target has now finds nothing.
        expect(epoll_ctl(kEpoll, EPOLL_CTL_DEL, kEvNow, nullptr) < 0 && errno == ENOENT,
               "the moved target is keyed by its old number, as before the dump");
    });
    CHECK(out == "");
}

TEST_CASE("epoll: a target the process no longer has is refused by preflight and dump") {
    // The test process keeps the eventfd alive; the dumped child registers it and closes it.
    UniqueFd e(eventfd(0, EFD_CLOEXEC));
    REQUIRE(e);
    int efd = e.get();
    pid_t pid = spawn_ready_child([efd] {
        int null = open("/dev/null", O_RDWR);
        int ep = epoll_create1(0);
        if (null < 0 || ep < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || !place(ep, 10) ||
            !place(efd, 11) || !add(10, 11, EPOLLIN, 5))
            return false;
        // Every other fd goes, the eventfd too: only the test process still has it.
        return syscall(SYS_close_range, 3, 9, 0) == 0 && syscall(SYS_close_range, 11, kReadyFd - 1, 0) == 0 &&
               syscall(SYS_close_range, kReadyFd + 1, ~0u, 0) == 0;
    });
    REQUIRE(pid > 0);
    Options opts;
    Log log(0);
    auto pre = preflight_fds(pid, opts, log);
    REQUIRE_FALSE(pre);
    CHECK_THAT(pre.error().str(), Catch::Contains(fmt::format("pid {} fd 10: epoll target registered as fd 11", pid)) &&
                                      Catch::Contains("is no longer open in this process"));
    TempDir images;
    std::string err = dump_and_kill(pid, images.fd(), log);
    CHECK_THAT(err, Catch::Contains(fmt::format("pid {} fd 10: epoll target registered as fd 11", pid)));
}
