// The two renderings of a BacktraceReport: JSON must parse whatever bytes the images
// put into names and paths, text must not carry control characters to a terminal.
#include <catch2/catch.hpp>

#include "criu/backtrace/backtrace_report.h"
#include "test/unit/images/test_util.h"

using namespace criu;

namespace {

BacktraceReport sample() {
    BacktraceReport r;
    r.dir = "/tmp/img";
    ProcessBacktrace p;
    p.pid = 42;
    p.comm = "server";
    p.warnings.push_back("/usr/lib/libfoo.so: inode 1 now, 2 at the dump");
    ThreadBacktrace t;
    t.tid = 42;
    BacktraceFrame f0;
    f0.ip = 0x7f0000001234;
    f0.sp = 0x7ffc00000000;
    f0.symbol = "pause";
    f0.symbol_offset = 0x12;
    f0.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    f0.module_offset = 0xd3df2;
    BacktraceFrame f1;
    f1.ip = 0xffffffffffff0000;  // above 2^53: must survive JSON exactly
    f1.sp = 0x7ffc00000010;
    BacktraceFrame f2;
    f2.ip = 0x7f0000005050;
    f2.sp = 0x7ffc00000100;
    f2.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    f2.signal_frame = true;
    t.frames = {f0, f1, f2};
    t.error = "unw_step after frame 1: bad frame";
    p.threads.push_back(t);
    ThreadBacktrace empty;
    empty.tid = 43;
    empty.error = "registers are 12 bytes";
    p.threads.push_back(empty);
    r.processes.push_back(p);
    ProcessBacktrace z;
    z.pid = 44;
    z.error = "zombie: no threads to unwind";
    r.processes.push_back(z);
    return r;
}

}  // namespace

TEST_CASE("json: a full report is valid JSON with exact hex addresses") {
    std::string json = backtraces_to_json(sample());
    INFO(json);
    REQUIRE(test::json_error(json) == "");
    REQUIRE(json.find("\"ip\":\"0xffffffffffff0000\"") != std::string::npos);
    REQUIRE(json.find("\"symbol\":\"pause\",\"symbol_offset\":18") != std::string::npos);
    REQUIRE(json.find("\"module_offset\":\"0xd3df2\"") != std::string::npos);
    // A frame without symbol or module says so with null rather than an empty string.
    REQUIRE(json.find("\"symbol\":null,\"module\":null,\"signal_frame\":false") != std::string::npos);
    REQUIRE(json.find("\"signal_frame\":true") != std::string::npos);
    REQUIRE(json.find("\"error\":\"zombie: no threads to unwind\"") != std::string::npos);
    REQUIRE(json.find("\"tid\":42,\"error\":\"unw_step") != std::string::npos);
}

TEST_CASE("json: an empty report is valid") {
    BacktraceReport r;
    REQUIRE(backtraces_to_json(r) == "{\"dir\":\"\",\"processes\":[]}");
}

TEST_CASE("json: hostile bytes in names and paths still give valid JSON") {
    BacktraceReport r = sample();
    std::string nasty = "a\"b\\c\n\t\x01\x7f";
    nasty += std::string("\xff\xfe", 2);       // never UTF-8
    nasty += std::string("\xc3\x28", 2);       // bad continuation
    nasty += std::string("\xed\xa0\x80", 3);   // a UTF-16 surrogate
    nasty += std::string("\xe2\x82", 2);       // cut short at the end
    r.dir = nasty;
    r.processes[0].comm = nasty;
    r.processes[0].warnings.push_back(nasty);
    r.processes[0].threads[0].frames[0].symbol = nasty;
    r.processes[0].threads[0].frames[0].module = nasty + "\xe2\x82\xac";  // valid euro sign kept
    std::string json = backtraces_to_json(r);
    INFO(json);
    REQUIRE(test::json_error(json) == "");
    REQUIRE(json.find("a\\\"b\\\\c\\u000a\\u0009\\u0001\\u007f\\ufffd\\ufffd") != std::string::npos);
    REQUIRE(json.find("\xe2\x82\xac") != std::string::npos);
}

TEST_CASE("text: one line per frame, unknown symbols as ??, errors shown") {
    std::string text = backtraces_to_text(sample());
    INFO(text);
    REQUIRE(text.find("pid 42 (server)\n") != std::string::npos);
    REQUIRE(text.find("  warning: /usr/lib/libfoo.so") != std::string::npos);
    REQUIRE(text.find("    #0  0x00007f0000001234 in pause+0x12 (/usr/lib/x86_64-linux-gnu/libc.so.6) sp=0x7ffc00000000\n") !=
            std::string::npos);
    REQUIRE(text.find("    #1  0xffffffffffff0000 in ?? sp=0x7ffc00000010\n") != std::string::npos);
    REQUIRE(text.find("    #2  0x00007f0000005050 in <signal handler called> (/usr/lib/x86_64-linux-gnu/libc.so.6) sp=") !=
            std::string::npos);
    REQUIRE(text.find("    (stopped: unw_step after frame 1: bad frame)\n") != std::string::npos);
    REQUIRE(text.find("  thread 43\n    (stopped: registers are 12 bytes)\n") != std::string::npos);
    REQUIRE(text.find("pid 44 ()\n  error: zombie") != std::string::npos);
}

TEST_CASE("text: control characters from the images are escaped") {
    BacktraceReport r = sample();
    r.processes[0].comm = "evil\x1b[2J";
    r.processes[0].threads[0].frames[0].symbol = "f\rg";
    std::string text = backtraces_to_text(r);
    REQUIRE(text.find('\x1b') == std::string::npos);
    REQUIRE(text.find('\r') == std::string::npos);
    REQUIRE(text.find("evil\\x1b[2J") != std::string::npos);
}
