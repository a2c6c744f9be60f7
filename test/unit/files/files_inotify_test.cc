// inotify: watches come back by path with their watch descriptors (including a gap left by a
// removed watch) and masks; events queued at dump time are dropped, as documented.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

struct Event {
    int wd = -1;
    uint32_t mask = 0;
    std::string name;
};

// The first event queued on `fd` (non-blocking), or wd -1.
Event next_event(int fd) {
    alignas(inotify_event) char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    Event e;
    if (n < static_cast<ssize_t>(sizeof(inotify_event)))
        return e;
    auto* ev = reinterpret_cast<inotify_event*>(buf);
    e.wd = ev->wd;
    e.mask = ev->mask;
    e.name = ev->len ? std::string(ev->name) : "";
    return e;
}

}  // namespace

TEST_CASE("inotify: watches keep their wd, mask and file; queued events are dropped") {
    TempDir images, work;
    std::ofstream(work / "file") << "x";
    std::ofstream(work / "other") << "y";
    pid_t pid = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        int in = inotify_init1(IN_NONBLOCK);
        if (in < 0 || !place(in, 10))
            return false;
        // wd 1 on the directory, wd 2 removed again, wd 3 on a file: restore must skip 2.
        int dir = inotify_add_watch(10, work.path().c_str(), IN_CREATE | IN_ONLYDIR);
        int gone = inotify_add_watch(10, (work / "other").c_str(), IN_ALL_EVENTS);
        if (dir != 1 || gone != 2 || inotify_rm_watch(10, gone) != 0)
            return false;
        int file = inotify_add_watch(10, (work / "file").c_str(), IN_MODIFY | IN_EXCL_UNLINK);
        // An event queued and never read: dropped by the dump.
        std::ofstream(work / "before") << "";
        return file == 3;
    });
    REQUIRE(pid > 0);
    TempDir logs;
    Log log(1);
    REQUIRE(log.open_file(logs / "dump.log"));
    REQUIRE(dump_and_kill(pid, images.fd(), log) == "");
    std::stringstream dump_log;
    dump_log << std::ifstream(logs / "dump.log").rdbuf();
    CHECK_THAT(dump_log.str(), Catch::Contains(fmt::format("pid {} fd 10: inotify with 2 watches: events not read "
                                                           "by the process", pid)) &&
                                   Catch::Contains("are not preserved"));
    auto files = dumped_files(images.fd(), pid);
    REQUIRE(files[10].has_inotify());
    const auto& in = files[10].inotify();
    CHECK(in.pending_bytes() > 0);  // IN_IGNORED of wd 2 and IN_CREATE "before"
    REQUIRE(in.watches_size() == 2);
    std::map<int, images::InotifyWatch> by_wd;
    for (const auto& w : in.watches())
        by_wd[w.wd()] = w;
    CHECK(by_wd[1].path() == work.path());
    CHECK(by_wd[1].mask() == IN_CREATE);
    CHECK(by_wd[3].path() == work / "file");
    CHECK(by_wd[3].mask() == (IN_MODIFY | IN_EXCL_UNLINK));

    std::string out = restore_and_check(images.fd(), pid, log, [&] {
        expect((fcntl(10, F_GETFL) & O_NONBLOCK) != 0, "O_NONBLOCK");
        Event e = next_event(10);
        expect(e.wd == -1, fmt::format("an event from before the dump came back: wd {} mask {:#x} {}", e.wd, e.mask,
                                       e.name));
        std::ofstream(work / "after") << "";
        e = next_event(10);
        expect(e.wd == 1 && e.mask == IN_CREATE && e.name == "after",
               fmt::format("after a create: wd {} mask {:#x} name \"{}\"", e.wd, e.mask, e.name));
        std::ofstream(work / "file", std::ios::app) << "more";
        e = next_event(10);
        expect(e.wd == 3 && e.mask == IN_MODIFY, fmt::format("after a write: wd {} mask {:#x}", e.wd, e.mask));
        std::string info = own_fdinfo(10);
        expect(info.find("inotify wd:1 ") != std::string::npos && info.find("inotify wd:3 ") != std::string::npos &&
                   info.find("inotify wd:2 ") == std::string::npos,
               "watch descriptors: " + info);
    });
    CHECK(out == "");
}

TEST_CASE("inotify: a watch on a deleted file is refused") {
    TempDir work;
    std::ofstream(work / "doomed") << "x";
    pid_t pid = spawn_ready_child([&] {
        if (!stdio_null_rest_closed())
            return false;
        // Held open, the unlinked inode keeps its watch (IN_DELETE_SELF waits for the last close).
        int f = open((work / "doomed").c_str(), O_RDONLY);
        int in = inotify_init1(0);
        return f >= 0 && place(f, 11) && in >= 0 && place(in, 10) &&
               inotify_add_watch(10, (work / "doomed").c_str(), IN_ATTRIB) == 1 && unlink((work / "doomed").c_str()) == 0;
    });
    REQUIRE(pid > 0);
    Options opts;
    Log log(0);
    auto st = preflight_fds(pid, opts, log);
    kill_child(pid);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().str(), Catch::Contains(fmt::format("pid {} fd 10: inotify watch wd 1", pid)) &&
                                     Catch::Contains("deleted"));
}
