// unwind_image_dir over images of a live bt_target written by the test's own
// miniature dumper (live_images.h): the call chain must come out in order, with names.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>

#include <dlfcn.h>
#include <unistd.h>

#include "criu/backtrace/backtrace.h"
#include "criu/core/proc_parse.h"
#include "test/unit/backtrace/live_images.h"
#include "test/unit/images/test_util.h"

using namespace criu;

namespace {

// Index of the first frame named `name`, or -1.
int frame_index(const ThreadBacktrace& t, const std::string& name) {
    for (size_t i = 0; i < t.frames.size(); i++)
        if (t.frames[i].symbol == name)
            return static_cast<int>(i);
    return -1;
}

void require_chain(const ThreadBacktrace& t, const std::vector<std::string>& chain) {
    int prev = -1;
    for (const std::string& name : chain) {
        int at = frame_index(t, name);
        INFO("looking for " << name);
        REQUIRE(at > prev);
        prev = at;
    }
}

const ThreadBacktrace& thread(const ProcessBacktrace& p, int32_t tid) {
    auto it = std::find_if(p.threads.begin(), p.threads.end(), [&](const ThreadBacktrace& t) { return t.tid == tid; });
    REQUIRE(it != p.threads.end());
    return *it;
}

// Writes the images of `target`, kills it, and unwinds: nothing is read from the live
// process once the images exist.
BacktraceReport unwind_live(std::unique_ptr<test::Target> target, const test::LiveDumpOptions& opts = {}) {
    test::TempDir tmp;
    std::string dir = tmp.file("img");
    auto w = test::write_live_images(target->pid(), dir, opts);
    INFO((w ? std::string() : w.error().str()));
    REQUIRE(w);
    target.reset();
    auto r = unwind_image_dir(dir);
    INFO((r ? std::string() : r.error().str()));
    REQUIRE(r);
    return *r;
}

}  // namespace

TEST_CASE("live images: main thread unwinds level_three, level_two, level_one, main") {
    auto target = std::make_unique<test::Target>();
    pid_t pid = target->pid();
    BacktraceReport report = unwind_live(std::move(target));
    REQUIRE(report.processes.size() == 1);
    const ProcessBacktrace& p = report.processes[0];
    INFO(backtraces_to_text(report));
    REQUIRE(p.error.empty());
    REQUIRE(p.pid == pid);
    REQUIRE(p.comm == "bt_target");
    const ThreadBacktrace& t = thread(p, pid);
    require_chain(t, {"level_three", "level_two", "level_one", "main"});
    // Frame 0 is in libc's pause (or the syscall wrapper under it), not in our code.
    REQUIRE(t.frames[0].module.find("libc") != std::string::npos);
    // level_three's frame is the one right above libc's.
    int l3 = frame_index(t, "level_three");
    REQUIRE(t.frames[l3].module == BT_TARGET_PATH);
    REQUIRE(t.frames[l3].module_offset.has_value());
    // Stack pointers grow towards the caller.
    for (int i = 1; i <= frame_index(t, "main"); i++)
        REQUIRE(t.frames[i].sp > t.frames[i - 1].sp);
}

TEST_CASE("live images: every thread of a multi-threaded process") {
    auto target = std::make_unique<test::Target>(std::vector<std::string>{"threads"});
    pid_t pid = target->pid();
    BacktraceReport report = unwind_live(std::move(target));
    INFO(backtraces_to_text(report));
    const ProcessBacktrace& p = report.processes.at(0);
    REQUIRE(p.error.empty());
    REQUIRE(p.threads.size() == 2);
    require_chain(thread(p, pid), {"level_three", "level_two", "level_one", "main"});
    const ThreadBacktrace& worker = p.threads[0].tid == pid ? p.threads[1] : p.threads[0];
    require_chain(worker, {"worker_inner", "worker_outer", "thread_main"});
}

TEST_CASE("live images: zstd pages and vDSO pages in the images") {
    auto target = std::make_unique<test::Target>();
    pid_t pid = target->pid();
    test::LiveDumpOptions opts;
    opts.codec = images::CODEC_ZSTD;
    opts.vdso_pages = true;
    BacktraceReport report = unwind_live(std::move(target), opts);
    INFO(backtraces_to_text(report));
    require_chain(thread(report.processes.at(0), pid), {"level_three", "level_two", "level_one", "main"});
}

TEST_CASE("live images: text and JSON renderings name the functions") {
    BacktraceReport report = unwind_live(std::make_unique<test::Target>());
    std::string text = backtraces_to_text(report);
    REQUIRE(text.find("in level_three+0x") != std::string::npos);
    REQUIRE(text.find("in main+0x") != std::string::npos);
    std::string json = backtraces_to_json(report);
    REQUIRE(test::json_error(json) == "");
    REQUIRE(json.find("\"symbol\":\"level_two\"") != std::string::npos);
}

TEST_CASE("live images: a thread in a signal handler on a sigaltstack unwinds across both stacks") {
    auto target = std::make_unique<test::Target>(std::vector<std::string>{"altstack"});
    pid_t pid = target->pid();
    BacktraceReport report = unwind_live(std::move(target));
    INFO(backtraces_to_text(report));
    const ProcessBacktrace& p = report.processes.at(0);
    REQUIRE(p.error.empty());
    const ThreadBacktrace& worker = p.threads[0].tid == pid ? p.threads[1] : p.threads[0];
    require_chain(worker, {"handler_inner", "on_signal", "worker_inner", "worker_outer", "thread_main"});
    // Right above the handler: the trampoline it returns through, marked as such.
    int handler = frame_index(worker, "on_signal");
    REQUIRE(worker.frames.at(handler + 1).signal_frame);
    for (int i = 0; i <= handler; i++)
        REQUIRE(!worker.frames[i].signal_frame);
    // The two halves lie on different stacks.
    uint64_t alt_sp = worker.frames[handler].sp, own_sp = worker.frames[frame_index(worker, "worker_inner")].sp;
    REQUIRE((alt_sp > own_sp ? alt_sp - own_sp : own_sp - alt_sp) > 0x10000);
    REQUIRE(backtraces_to_text(report).find("in <signal handler called> (") != std::string::npos);
}

TEST_CASE("live images: unwinding leaves no descriptor or mapping behind") {
    auto count = [] {
        auto fds = list_fds(getpid());
        REQUIRE(fds);
        auto maps = read_maps(getpid());
        REQUIRE(maps);
        return std::make_pair(fds->size(), maps->size());
    };
    test::TempDir tmp;
    std::string dir = tmp.file("img");
    {
        test::Target target({"threads"});
        REQUIRE(test::write_live_images(target.pid(), dir));
    }
    REQUIRE(unwind_image_dir(dir));  // warm up: libraries' lazy state
    auto before = count();
    for (int i = 0; i < 5; i++)
        REQUIRE(unwind_image_dir(dir));
    REQUIRE(count() == before);
}

TEST_CASE("link: C++ exceptions stay with libgcc_s, not libunwind's _Unwind_* copy") {
    // A binary linking criu_backtrace must not have libunwind.so.8 ahead of libgcc_s:
    // libstdc++ would then throw through libunwind (see criu/backtrace/CMakeLists.txt).
    void* sym = dlsym(RTLD_DEFAULT, "_Unwind_RaiseException");
    REQUIRE(sym != nullptr);
    Dl_info info;
    REQUIRE(dladdr(sym, &info) != 0);
    INFO(info.dli_fname);
    REQUIRE(std::string(info.dli_fname).find("libgcc_s") != std::string::npos);
}
