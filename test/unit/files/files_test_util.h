// Helpers of the files tests: temporary directories, and children that set up a state, say
// they are ready, and wait to be dumped (or restore themselves and check from inside).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

#include "criu/core/log.h"
#include "criu/core/unique_fd.h"
#include "proto/files.pb.h"

namespace criu::test {

class TempDir {
public:
    TempDir();
    ~TempDir();
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }
    int fd() const { return fd_.get(); }

private:
    std::string path_;
    UniqueFd fd_;
};

// A child that runs `setup` (it must leave fd `kReadyFd` alone), then closes kReadyFd to say it is
// ready and sleeps until killed. setup returns false to fail; the parent then sees EOF and a dead
// child. Returns the child's pid once it is ready.
inline constexpr int kReadyFd = 900;
pid_t spawn_ready_child(const std::function<bool()>& setup);
// Kills and reaps a child started by spawn_ready_child.
void kill_child(pid_t pid);

// Runs `body` in a forked child; its report (what went wrong, empty if nothing) is written to
// fd kReportFd, which restore leaves alone. Returns "exit N: report" or "" if the child exited 0
// with an empty report.
inline constexpr int kReportFd = 901;
std::string run_checked_child(const std::function<int()>& body);
// For bodies: appends one failure line to the report.
void report(const std::string& line);

// For bodies: reports `what` unless `ok`.
void expect(bool ok, const std::string& what);

// For setups: fds 0-2 become /dev/null, every other fd but kReadyFd is closed.
bool stdio_null_rest_closed();

// Dumps the fds of the single process `pid` into `images_dirfd` (FilesDumper, then finish) and
// kills it. "" on success, else the error.
std::string dump_and_kill(pid_t pid, int images_dirfd, Log& log);
// Loads the images of `pid`, restores them in a fresh child and runs `check` there; returns
// the child's report ("" if everything held).
std::string restore_and_check(int images_dirfd, pid_t pid, Log& log, const std::function<void()>& check);

// The FileEntry of every fd of `pid` in the images (fd -> entry); empty if they cannot be read.
std::map<int, images::FileEntry> dumped_files(int images_dirfd, pid_t pid);

// /proc/self/fdinfo/FD of the calling process.
std::string own_fdinfo(int fd);

// Puts `fd` at number `target` (closing whatever was there).
bool place(int fd, int target, bool cloexec = false);
bool write_all(int fd, const std::string& s);
std::string read_some(int fd, size_t max = 4096);

}  // namespace criu::test
