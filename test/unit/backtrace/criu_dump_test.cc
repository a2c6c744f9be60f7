// End to end: the real `criu dump` writes the images, the process is gone, and the
// backtraces come out of the images alone.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>

#include <fmt/ranges.h>

#include "criu/backtrace/backtrace.h"
#include "test/unit/backtrace/live_images.h"
#include "test/unit/images/test_util.h"

using namespace criu;

namespace {

// Runs `criu dump -t pid -D dir --leave-running`; returns its exit status, and its
// stderr in `err`.
int run_criu_dump(pid_t pid, const std::string& dir, const std::string& log, std::string& err) {
    std::string criu = CRIU_BIN_PATH;
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        std::string p = std::to_string(pid);
        execl(criu.c_str(), criu.c_str(), "dump", "-t", p.c_str(), "-D", dir.c_str(), "--leave-running",
              static_cast<char*>(nullptr));
        _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    err = test::read_file(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool criu_built() {
    std::string criu = CRIU_BIN_PATH;
    return !criu.empty() && access(criu.c_str(), X_OK) == 0;
}

std::vector<std::string> names(const ThreadBacktrace& t) {
    std::vector<std::string> out;
    for (const BacktraceFrame& f : t.frames)
        out.push_back(f.symbol);
    return out;
}

// The names of our own frames, in order, dropping libc's above and below.
std::vector<std::string> own_frames(const ThreadBacktrace& t) {
    std::vector<std::string> out;
    for (const BacktraceFrame& f : t.frames)
        if (f.module == BT_TARGET_PATH && f.symbol != "_start")
            out.push_back(f.symbol);
    return out;
}

// Dumps bt_target started with `args` through the real criu, kills it, and unwinds the
// images. Empty when this tree has no working `criu dump` yet (the test then warns).
std::optional<BacktraceReport> dump_and_unwind(const std::vector<std::string>& args, pid_t& pid) {
    if (!criu_built()) {
        WARN("no criu binary in this build tree (" << CRIU_BIN_PATH << "): end-to-end test not run");
        return std::nullopt;
    }
    test::TempDir tmp;
    std::string dir = tmp.file("img");
    std::string err;
    int rc;
    {
        test::Target target(args);
        pid = target.pid();
        rc = run_criu_dump(pid, dir, tmp.file("criu.out"), err);
    }  // the target is killed here: what follows reads the images only
    INFO("criu dump exit " << rc << ":\n" << err);
    if (rc == 2 && err.find("is not part of criu") != std::string::npos) {
        WARN("criu dump is not implemented yet in this tree: end-to-end test not run");
        return std::nullopt;
    }
    REQUIRE(rc == 0);
    auto r = unwind_image_dir(dir);
    INFO((r ? std::string() : r.error().str()));
    REQUIRE(r);
    return *r;
}

}  // namespace

TEST_CASE("criu dump: level_three, level_two, level_one, main from the real dumper's images") {
    pid_t pid = 0;
    auto r = dump_and_unwind({"threads"}, pid);
    if (!r)
        return;
    INFO(backtraces_to_text(*r));
    REQUIRE(r->processes.size() == 1);
    const ProcessBacktrace& p = r->processes[0];
    REQUIRE(p.error.empty());
    REQUIRE(p.pid == pid);
    REQUIRE(p.threads.size() == 2);
    const ThreadBacktrace& main_thread = p.threads[0].tid == pid ? p.threads[0] : p.threads[1];
    const ThreadBacktrace& worker = p.threads[0].tid == pid ? p.threads[1] : p.threads[0];
    INFO("main thread: " << fmt::format("{}", fmt::join(names(main_thread), " <- ")));
    REQUIRE(own_frames(main_thread) == std::vector<std::string>{"level_three", "level_two", "level_one", "main"});
    REQUIRE(main_thread.error.empty());
    REQUIRE(main_thread.frames.at(0).module.find("libc") != std::string::npos);
    REQUIRE(own_frames(worker) == std::vector<std::string>{"worker_inner", "worker_outer", "thread_main"});
}

TEST_CASE("criu dump: a thread stopped in a handler on its sigaltstack") {
    pid_t pid = 0;
    auto r = dump_and_unwind({"altstack"}, pid);
    if (!r)
        return;
    INFO(backtraces_to_text(*r));
    const ProcessBacktrace& p = r->processes.at(0);
    REQUIRE(p.error.empty());
    const ThreadBacktrace& worker = p.threads.at(0).tid == pid ? p.threads.at(1) : p.threads.at(0);
    REQUIRE(own_frames(worker) ==
            std::vector<std::string>{"handler_inner", "on_signal", "worker_inner", "worker_outer", "thread_main"});
}
