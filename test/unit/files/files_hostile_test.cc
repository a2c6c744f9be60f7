// Hostile images are refused by FilesRestorer::load, before anything is created, with the file,
// the record and the bad value named.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <time.h>

#include <fmt/format.h>

#include "criu/files/fd_kinds.h"
#include "files_test_util.h"
#include "images/image_io.h"
#include "proto/files.pb.h"

using namespace criu;
using namespace criu::test;

namespace {

constexpr pid_t kPid = 4211;

struct HostileImages {
    std::vector<images::FileEntry> files;
    std::vector<images::FdEntry> fds;
    std::vector<images::PipeData> pipes;

    HostileImages() {
        images::FileEntry null;
        null.set_id(1);
        null.set_kind(images::FD_CHR);
        null.mutable_chr()->set_path("/dev/null");
        null.mutable_chr()->set_flags(O_RDWR);
        null.mutable_chr()->set_rdev(makedev(1, 3));
        files.push_back(null);
        images::FileEntry pipe;
        pipe.set_id(2);
        pipe.set_kind(images::FD_PIPE);
        pipe.mutable_pipe()->set_pipe_ino(99);
        pipe.mutable_pipe()->set_dev(5);
        pipe.mutable_pipe()->set_flags(O_RDONLY);
        files.push_back(pipe);
        fds.push_back(fd_entry(0, 1, images::FD_CHR));
        fds.push_back(fd_entry(3, 2, images::FD_PIPE));
        images::PipeData d;
        d.set_pipe_ino(99);
        d.set_dev(5);
        d.set_pipe_size(4096);
        d.set_data("queued");
        pipes.push_back(d);
    }

    static images::FdEntry fd_entry(int fd, uint32_t id, images::FdKind kind) {
        images::FdEntry e;
        e.set_fd(fd);
        e.set_file_id(id);
        e.set_kind(kind);
        return e;
    }

    template <class T>
    static void write(int dirfd, const std::string& name, ImageType type, const std::vector<T>& records) {
        auto w = ImageWriter::create_at(dirfd, name, type);
        REQUIRE(w);
        for (const auto& r : records)
            REQUIRE(w->write(r));
        REQUIRE(w->close());
    }

    // "" if the images load, else the error.
    std::string load() {
        TempDir dir;
        write(dir.fd(), image_file_name(ImageType::Files), ImageType::Files, files);
        write(dir.fd(), image_file_name(ImageType::Fdinfo, kPid), ImageType::Fdinfo, fds);
        write(dir.fd(), image_file_name(ImageType::PipeData), ImageType::PipeData, pipes);
        Log log(0);
        auto r = FilesRestorer::load(dir.fd(), {kPid}, log);
        return r ? "" : r.error().str();
    }
};

}  // namespace

TEST_CASE("hostile files images are refused with file, record and value named") {
    HostileImages h;
    REQUIRE(h.load() == "");

    SECTION("negative fd") {
        h.fds[0].set_fd(-1);
        CHECK_THAT(h.load(), Catch::Contains("fdinfo-4211.img record 1 (fd -1): fd number -1 is out of range"));
    }
    SECTION("huge fd") {
        h.fds[1].set_fd(1 << 30);
        CHECK_THAT(h.load(), Catch::Contains("fdinfo-4211.img record 2 (fd 1073741824): fd number 1073741824 is out "
                                             "of range [0, 1048576)"));
    }
    SECTION("the same fd twice") {
        h.fds[1].set_fd(0);
        CHECK_THAT(h.load(), Catch::Contains("record 2 (fd 0): fd 0 appears twice"));
    }
    SECTION("unknown file id") {
        h.fds[1].set_file_id(77);
        CHECK_THAT(h.load(), Catch::Contains("fdinfo-4211.img record 2 (fd 3): file id 77 is not in files.img"));
    }
    SECTION("fd kind disagrees with its file") {
        h.fds[1].set_kind(images::FD_REG);
        CHECK_THAT(h.load(), Catch::Contains("kind FD_REG disagrees with file id 2 of kind FD_PIPE"));
    }
    SECTION("path with a NUL byte") {
        h.files[0].mutable_chr()->set_path(std::string("/dev/nu\0ll", 10));
        CHECK_THAT(h.load(), Catch::Contains("files.img record 1 (file id 1): path \"/dev/nu\" contains a NUL byte"));
    }
    SECTION("relative path") {
        h.files[0].mutable_chr()->set_path("dev/null");
        CHECK_THAT(h.load(), Catch::Contains("files.img record 1 (file id 1): path \"dev/null\" is not absolute"));
    }
    SECTION("unknown open flags") {
        h.files[0].mutable_chr()->set_flags(O_RDWR | 0x40000000);
        CHECK_THAT(h.load(), Catch::Contains("files.img record 1 (file id 1): /dev/null: open flags"));
    }
    SECTION("pipe data larger than the pipe") {
        h.pipes[0].set_data(std::string(5000, 'x'));
        CHECK_THAT(h.load(), Catch::Contains("pipes-data.img record 1 (pipe ino 99): 5000 bytes of data do not fit "
                                             "a pipe of size 4096"));
    }
    SECTION("pipe size not a power of two") {
        h.pipes[0].set_pipe_size(5000);
        CHECK_THAT(h.load(), Catch::Contains("pipe size 5000 is not a power of two"));
    }
    SECTION("pipe data for no pipe") {
        h.pipes[0].set_pipe_ino(100);
        CHECK_THAT(h.load(), Catch::Contains("pipes-data.img record 1 (pipe ino 100): no pipe or FIFO"));
    }
    SECTION("ghost file outside the image directory") {
        auto* r = h.files[0].mutable_reg();
        h.files[0].set_kind(images::FD_REG);
        h.fds[0].set_kind(images::FD_REG);
        r->set_path("/tmp/x");
        r->set_mode(S_IFREG | 0600);
        r->set_deleted(true);
        r->set_ghost_file("../../etc/passwd");
        CHECK_THAT(h.load(), Catch::Contains("/tmp/x: ghost file name \"../../etc/passwd\" is not a plain file name"));
    }
    SECTION("a kind that cannot be restored") {
        h.files[0].set_kind(static_cast<images::FdKind>(99));  // written by a newer criu
        CHECK_THAT(h.load(), Catch::Contains("files.img record 1 (file id 1): kind 99 cannot be restored"));
    }
    SECTION("duplicate file id") {
        h.files[1].set_id(1);
        CHECK_THAT(h.load(), Catch::Contains("files.img record 2 (file id 1): file id 1 is a duplicate"));
    }
}

namespace {

images::FileEntry entry(uint32_t id, images::FdKind kind) {
    images::FileEntry e;
    e.set_id(id);
    e.set_kind(kind);
    return e;
}

// A valid image set with one of each new kind, on top of HostileImages: eventfd (fd 4),
// timerfd (5), signalfd (6), epoll (7) watching the pipe (3) and the eventfd, inotify (8) and
// memfd (9) whose content file is written by load().
struct HostileKinds : HostileImages {
    std::string memfd_content = "memfd!";

    HostileKinds() {
        auto ev = entry(3, images::FD_EVENTFD);
        ev.mutable_eventfd()->set_flags(O_RDWR);
        ev.mutable_eventfd()->set_counter(42);
        add(4, ev);
        auto t = entry(4, images::FD_TIMERFD);
        t.mutable_timerfd()->set_flags(O_RDWR);
        t.mutable_timerfd()->set_clockid(CLOCK_MONOTONIC);
        t.mutable_timerfd()->set_value_sec(3);
        add(5, t);
        auto s = entry(5, images::FD_SIGNALFD);
        s.mutable_signalfd()->set_flags(O_RDWR);
        s.mutable_signalfd()->set_mask(1u << (SIGUSR1 - 1));
        add(6, s);
        auto ep = entry(6, images::FD_EPOLL);
        ep.mutable_epoll()->set_flags(O_RDWR);
        ep.mutable_epoll()->set_owner_pid(kPid);
        add_target(ep, 3, 0x11);
        add_target(ep, 4, 0x22);
        add(7, ep);
        auto in = entry(7, images::FD_INOTIFY);
        auto* w = in.mutable_inotify()->add_watches();
        w->set_wd(1);
        w->set_mask(IN_CREATE);
        w->set_path("/tmp");
        add(8, in);
        auto m = entry(8, images::FD_MEMFD);
        m.mutable_memfd()->set_name("m");
        m.mutable_memfd()->set_flags(O_RDWR);
        m.mutable_memfd()->set_size(memfd_content.size());
        m.mutable_memfd()->set_seals(F_SEAL_GROW);
        m.mutable_memfd()->set_content_file("memfd-8.raw");
        add(9, m);
    }

    void add(int fd, const images::FileEntry& e) {
        files.push_back(e);
        fds.push_back(fd_entry(fd, e.id(), e.kind()));
    }
    images::FileEntry& file(images::FdKind kind) {
        for (auto& f : files)
            if (f.kind() == kind)
                return f;
        FAIL("no entry of kind " << kind);
        return files[0];
    }
    static void add_target(images::FileEntry& ep, int fd, uint64_t data) {
        auto* t = ep.mutable_epoll()->add_targets();
        t->set_tfd(fd);
        t->set_fd(fd);
        t->set_events(EPOLLIN);
        t->set_data(data);
    }

    std::string load_with_content() {
        TempDir dir;
        write(dir.fd(), image_file_name(ImageType::Files), ImageType::Files, files);
        write(dir.fd(), image_file_name(ImageType::Fdinfo, kPid), ImageType::Fdinfo, fds);
        write(dir.fd(), image_file_name(ImageType::PipeData), ImageType::PipeData, pipes);
        if (!memfd_content.empty()) {
            UniqueFd f(openat(dir.fd(), "memfd-8.raw", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
            REQUIRE(write_all(f.get(), memfd_content));
        }
        Log log(0);
        auto r = FilesRestorer::load(dir.fd(), {kPid}, log);
        return r ? "" : r.error().str();
    }
};

}  // namespace

TEST_CASE("hostile eventfd, epoll, signalfd, timerfd, inotify and memfd entries are refused at load") {
    HostileKinds h;
    REQUIRE(h.load_with_content() == "");
    auto& ev = *h.file(images::FD_EVENTFD).mutable_eventfd();
    auto& t = *h.file(images::FD_TIMERFD).mutable_timerfd();
    auto& sig = *h.file(images::FD_SIGNALFD).mutable_signalfd();
    auto& ep = *h.file(images::FD_EPOLL).mutable_epoll();
    auto& in = *h.file(images::FD_INOTIFY).mutable_inotify();
    auto& m = *h.file(images::FD_MEMFD).mutable_memfd();

    SECTION("eventfd counter no eventfd can hold") {
        ev.set_counter(UINT64_MAX);
        CHECK_THAT(h.load_with_content(), Catch::Contains("files.img record 3 (file id 3): eventfd counter "
                                                          "0xffffffffffffffff is above the largest value"));
    }
    SECTION("eventfd with an access mode eventfd() never gives") {
        ev.set_flags(O_WRONLY);
        CHECK_THAT(h.load_with_content(), Catch::Contains("eventfd: open flags 01 have access mode 1"));
    }
    SECTION("timerfd on a clock timerfd_create() refuses") {
        t.set_clockid(CLOCK_MONOTONIC_COARSE);
        CHECK_THAT(h.load_with_content(), Catch::Contains("record 4 (file id 4): timerfd clock id 6 is not one"));
    }
    SECTION("timerfd with nanoseconds past a second") {
        t.set_interval_nsec(1000000000);
        CHECK_THAT(h.load_with_content(), Catch::Contains("interval 0.1000000000 is not a valid time"));
    }
    SECTION("timerfd with absurd pending expirations") {
        t.set_ticks(UINT64_MAX);
        CHECK_THAT(h.load_with_content(), Catch::Contains("timerfd with 18446744073709551615 pending expirations"));
    }
    SECTION("timerfd deadline on a clock that has none") {
        t.set_has_deadline(true);
        CHECK_THAT(h.load_with_content(), Catch::Contains("only absolute wall-clock timers have one"));
    }
    SECTION("signalfd for SIGKILL") {
        sig.set_mask(sig.mask() | (1u << (SIGKILL - 1)));
        CHECK_THAT(h.load_with_content(), Catch::Contains("record 5 (file id 5): signalfd mask 0x300 has SIGKILL"));
    }
    SECTION("epoll target the process does not have") {
        ep.mutable_targets(1)->set_fd(42);
        CHECK_THAT(h.load_with_content(),
                   Catch::Contains("files.img file id 6 (epoll): refers to fd 42, which pid 4211 does not have"));
    }
    SECTION("epoll target out of range") {
        ep.mutable_targets(0)->set_tfd(-7);
        CHECK_THAT(h.load_with_content(), Catch::Contains("epoll target fd 3 (registered as -7) is out of range"));
    }
    SECTION("epoll watching itself") {
        ep.mutable_targets(1)->set_fd(7);
        CHECK_THAT(h.load_with_content(), Catch::Contains("file id 6 (epoll): refers to fd 7, which is itself"));
    }
    SECTION("epolls watching each other") {
        auto other = entry(9, images::FD_EPOLL);
        other.mutable_epoll()->set_flags(O_RDWR);
        other.mutable_epoll()->set_owner_pid(kPid);
        HostileKinds::add_target(other, 7, 1);
        h.add(10, other);
        HostileKinds::add_target(h.file(images::FD_EPOLL), 10, 2);
        CHECK_THAT(h.load_with_content(), Catch::Contains("is part of a cycle of references in pid 4211"));
    }
    SECTION("epoll of a process that is not restored") {
        ep.set_owner_pid(999);
        CHECK_THAT(h.load_with_content(), Catch::Contains("names fds of pid 999, which is not being restored"));
    }
    SECTION("epoll events with unknown bits") {
        ep.mutable_targets(0)->set_events(0x08000001);
        CHECK_THAT(h.load_with_content(), Catch::Contains("events 0x8000001 have unknown bits 0x8000000"));
    }
    SECTION("epoll target listed twice") {
        HostileKinds::add_target(h.file(images::FD_EPOLL), 3, 0x33);
        CHECK_THAT(h.load_with_content(), Catch::Contains("epoll target fd 3 registered as 3 appears twice"));
    }
    SECTION("negative inotify watch descriptor") {
        in.mutable_watches(0)->set_wd(-3);
        CHECK_THAT(h.load_with_content(),
                   Catch::Contains("record 7 (file id 7): inotify watch descriptor -3 is not positive"));
    }
    SECTION("inotify watch descriptor twice") {
        *in.add_watches() = in.watches(0);
        CHECK_THAT(h.load_with_content(), Catch::Contains("inotify watch descriptor 1 appears twice"));
    }
    SECTION("inotify watch by relative path") {
        in.mutable_watches(0)->set_path("tmp");
        CHECK_THAT(h.load_with_content(), Catch::Contains("inotify watch 1: path \"tmp\" is not absolute"));
    }
    SECTION("inotify mask without events") {
        in.mutable_watches(0)->set_mask(IN_ONESHOT);
        CHECK_THAT(h.load_with_content(), Catch::Contains("inotify watch 1: mask 0x80000000 is not a set of events"));
    }
    SECTION("memfd seals with unknown bits") {
        m.set_seals(F_SEAL_GROW | 0x100);
        CHECK_THAT(h.load_with_content(),
                   Catch::Contains("record 8 (file id 8): memfd \"m\": seals 0x104 have unknown bits 0x100"));
    }
    SECTION("memfd content outside the image directory") {
        m.set_content_file("../../etc/shadow");
        CHECK_THAT(h.load_with_content(), Catch::Contains("content file name \"../../etc/shadow\" is not a plain"));
    }
    SECTION("memfd content file missing") {
        h.memfd_content.clear();
        CHECK_THAT(h.load_with_content(), Catch::Contains("memfd \"m\": content file memfd-8.raw: No such file"));
    }
    SECTION("memfd content file of the wrong size") {
        m.set_size(4096);
        CHECK_THAT(h.load_with_content(), Catch::Contains("content file memfd-8.raw holds 6 bytes, 4096 expected"));
    }
    SECTION("memfd of absurd size") {
        m.set_size(1ull << 50);
        CHECK_THAT(h.load_with_content(), Catch::Contains("size 1125899906842624 exceeds the limit"));
    }
    SECTION("memfd name longer than memfd_create() takes") {
        m.set_name(std::string(300, 'n'));
        CHECK_THAT(h.load_with_content(), Catch::Contains("the name (300 bytes) is longer than 249"));
    }
}
