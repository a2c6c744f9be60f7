// Hostile images are refused by FilesRestorer::load, before anything is created, with the file,
// the record and the bad value named.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/sysmacros.h>

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
        h.files[0].set_kind(images::FD_EVENTFD);
        CHECK_THAT(h.load(), Catch::Contains("files.img record 1 (file id 1): kind FD_EVENTFD cannot be restored"));
    }
    SECTION("duplicate file id") {
        h.files[1].set_id(1);
        CHECK_THAT(h.load(), Catch::Contains("files.img record 2 (file id 1): file id 1 is a duplicate"));
    }
}
