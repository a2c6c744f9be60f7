// Images that lie: made-up registers, garbage stacks, missing or contradicting files.
// unwind_image_dir must finish on each, report what it could, and never crash or hang.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/user.h>

#include <cstring>
#include <random>

#include "criu/backtrace/backtrace.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "images/page_writer.h"
#include "proto/core.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"
#include "test/unit/backtrace/live_images.h"
#include "test/unit/images/test_util.h"

using namespace criu;

namespace {

// Images of a stopped bt_target (two threads), written once per test case.
struct Fixture {
    test::TempDir tmp;
    std::string dir = tmp.file("img");
    pid_t pid = 0;

    Fixture() {
        test::Target target({"threads"});
        pid = target.pid();
        auto w = test::write_live_images(pid, dir);
        INFO((w ? std::string() : w.error().str()));
        REQUIRE(w);
    }

    template <class T>
    T read(ImageType type, int64_t id = -1) {
        auto d = ImageDir::open(dir);
        REQUIRE(d);
        auto r = d->open_reader(type, id);
        REQUIRE(r);
        auto msg = r->read_one<T>();
        REQUIRE(msg);
        return *msg;
    }

    void write(ImageType type, const google::protobuf::MessageLite& msg, int64_t id = -1) {
        auto d = ImageDir::open(dir);
        REQUIRE(d);
        auto w = d->open_writer(type, id);
        REQUIRE(w);
        REQUIRE(w->write(msg));
        REQUIRE(w->close());
    }

    ProcessBacktrace unwind_one(const BacktraceOptions& opts = {}) {
        auto r = unwind_image_dir(dir, opts);
        INFO((r ? std::string() : r.error().str()));
        REQUIRE(r);
        REQUIRE(r->processes.size() >= 1);
        // Whatever happened, both renderings stay well-formed.
        REQUIRE(test::json_error(backtraces_to_json(*r)) == "");
        (void)backtraces_to_text(*r);
        return r->processes[0];
    }
};

user_regs_struct regs_of(const images::ThreadCore& t) {
    user_regs_struct r;
    REQUIRE(t.gpregs().size() == sizeof(r));
    std::memcpy(&r, t.gpregs().data(), sizeof(r));
    return r;
}

void set_regs(images::ThreadCore* t, const user_regs_struct& r) {
    t->set_gpregs(std::string(reinterpret_cast<const char*>(&r), sizeof(r)));
}

}  // namespace

TEST_CASE("hostile: made-up registers end in an error or a short stack, never a crash") {
    Fixture fx;
    images::TaskCore orig = fx.read<images::TaskCore>(ImageType::Core, fx.pid);
    images::MmInfo mm = fx.read<images::MmInfo>(ImageType::Mm, fx.pid);
    user_regs_struct real = regs_of(orig.threads(0));
    std::vector<uint64_t> interesting = {0, 1, ~uint64_t(0), 0x7fffffffffff, real.rip, real.rsp, real.rsp - 8,
                                         real.rbp};
    for (const images::Vma& v : mm.vmas()) {
        interesting.push_back(v.start());
        interesting.push_back(v.end() - 8);
        interesting.push_back(v.end());
    }
    std::mt19937_64 rng(1234);
    auto pick = [&] { return rng() % 3 == 0 ? rng() : interesting[rng() % interesting.size()]; };
    for (int round = 0; round < 40; round++) {
        images::TaskCore core = orig;
        for (int t = 0; t < core.threads_size(); t++) {
            user_regs_struct r = real;
            r.rip = pick();
            r.rsp = pick();
            r.rbp = pick();
            if (round % 2)
                r.rax = pick(), r.rbx = pick(), r.r12 = pick(), r.eflags = pick();
            set_regs(core.mutable_threads(t), r);
        }
        fx.write(ImageType::Core, core, fx.pid);
        ProcessBacktrace p = fx.unwind_one();
        REQUIRE(p.error.empty());
        REQUIRE(p.threads.size() == 2);
        for (const ThreadBacktrace& t : p.threads)
            REQUIRE(t.frames.size() <= 256);
    }
}

TEST_CASE("hostile: a stack of random words pointing everywhere") {
    Fixture fx;
    images::MmInfo mm = fx.read<images::MmInfo>(ImageType::Mm, fx.pid);
    std::vector<uint64_t> targets;
    for (const images::Vma& v : mm.vmas())
        for (uint64_t a = v.start(); a < v.end() && targets.size() < 4096; a += 0x1000 - 8)
            targets.push_back(a);
    std::mt19937_64 rng(99);
    for (int round = 0; round < 6; round++) {
        // Rewrite the pages: every page the image holds gets words that look like
        // return addresses and frame pointers into the process's own mappings.
        auto dir = ImageDir::open(fx.dir);
        REQUIRE(dir);
        std::vector<std::pair<uint64_t, std::string>> pages;
        {
            auto reader = PageReader::open(*dir, fx.pid);
            REQUIRE(reader);
            for (const PageEntry& e : reader->entries()) {
                std::string data(e.size(), '\0');
                auto* words = reinterpret_cast<uint64_t*>(data.data());
                for (size_t i = 0; i < data.size() / 8; i++)
                    words[i] = rng() % 4 == 0 ? rng() : targets[rng() % targets.size()];
                pages.emplace_back(e.vaddr, std::move(data));
            }
        }
        PageWriterOptions o;
        o.threads = 0;
        auto w = PageWriter::create(*dir, fx.pid, o);
        REQUIRE(w);
        for (const auto& [vaddr, data] : pages)
            REQUIRE(w->add_pages(vaddr, data.data(), data.size() / kPageSize));
        REQUIRE(w->finish());
        ProcessBacktrace p = fx.unwind_one();
        REQUIRE(p.error.empty());
        for (const ThreadBacktrace& t : p.threads)
            REQUIRE(!t.frames.empty());  // frame 0 comes from the registers, which are intact
    }
}

TEST_CASE("hostile: the frame limit ends every thread's walk") {
    Fixture fx;
    BacktraceOptions opts;
    opts.max_frames = 3;
    ProcessBacktrace p = fx.unwind_one(opts);
    for (const ThreadBacktrace& t : p.threads) {
        REQUIRE(t.frames.size() == 3);
        REQUIRE(t.error == "stopped after 3 frames");
    }
}

TEST_CASE("hostile: broken thread records are per-thread errors") {
    Fixture fx;
    images::TaskCore core = fx.read<images::TaskCore>(ImageType::Core, fx.pid);
    REQUIRE(core.threads_size() == 2);
    int32_t worker = core.threads(1).tid();
    core.mutable_threads(1)->set_gpregs("short");
    fx.write(ImageType::Core, core, fx.pid);
    images::PstreeEntry pe = fx.read<images::PstreeEntry>(ImageType::Pstree);
    pe.add_threads(999999);  // a thread the core image does not know
    fx.write(ImageType::Pstree, pe);

    ProcessBacktrace p = fx.unwind_one();
    REQUIRE(p.error.empty());
    REQUIRE(p.threads.size() == 3);
    for (const ThreadBacktrace& t : p.threads) {
        if (t.tid == fx.pid) {
            REQUIRE(t.error.empty());
            REQUIRE(!t.frames.empty());
        } else if (t.tid == worker) {
            REQUIRE(t.error.find("registers are 5 bytes") != std::string::npos);
        } else {
            REQUIRE(t.tid == 999999);
            REQUIRE(t.error.find("no registers") != std::string::npos);
        }
    }
}

TEST_CASE("hostile: a process with missing or contradicting images fails alone") {
    Fixture fx;
    // A second process with no images at all, a zombie, and one whose core is for another pid.
    images::PstreeEntry first = fx.read<images::PstreeEntry>(ImageType::Pstree);
    images::PstreeEntry ghost;
    ghost.set_pid(fx.pid + 100000);
    ghost.add_threads(ghost.pid());
    images::PstreeEntry zombie;
    zombie.set_pid(fx.pid + 100001);
    zombie.set_zombie(true);
    images::PstreeEntry liar;
    liar.set_pid(fx.pid + 100002);
    liar.add_threads(liar.pid());
    images::TaskCore core = fx.read<images::TaskCore>(ImageType::Core, fx.pid);
    fx.write(ImageType::Core, core, liar.pid());  // says pid fx.pid inside
    {
        auto d = ImageDir::open(fx.dir);
        REQUIRE(d);
        auto w = d->open_writer(ImageType::Pstree);
        REQUIRE(w);
        for (const auto* e : {&first, &ghost, &zombie, &liar})
            REQUIRE(w->write(*e));
        REQUIRE(w->close());
    }
    auto r = unwind_image_dir(fx.dir);
    REQUIRE(r);
    REQUIRE(r->processes.size() == 4);
    REQUIRE(r->processes[0].error.empty());
    REQUIRE(!r->processes[0].threads.at(0).frames.empty());
    REQUIRE(r->processes[1].error.find("core-") != std::string::npos);
    REQUIRE(r->processes[2].error.find("zombie") != std::string::npos);
    REQUIRE(r->processes[3].error.find("is for pid") != std::string::npos);

    // Without mm-<pid>.img the process cannot be unwound; the error names the file.
    REQUIRE(::unlink((fx.dir + "/mm-" + std::to_string(fx.pid) + ".img").c_str()) == 0);
    r = unwind_image_dir(fx.dir);
    REQUIRE(r);
    REQUIRE(r->processes[0].error.find("mm-") != std::string::npos);
}

TEST_CASE("hostile: too many threads, a pre-dump, no directory") {
    Fixture fx;
    images::TaskCore core = fx.read<images::TaskCore>(ImageType::Core, fx.pid);
    images::TaskCore many = core;
    for (int i = 0; i < 16384; i++)
        *many.add_threads() = core.threads(0);
    fx.write(ImageType::Core, many, fx.pid);
    ProcessBacktrace p = fx.unwind_one();
    REQUIRE(p.error.find("more than 16384 threads") != std::string::npos);

    auto dir = ImageDir::open(fx.dir);
    REQUIRE(dir);
    auto inv = dir->read_inventory();
    REQUIRE(inv);
    inv->set_pre_dump(true);
    REQUIRE(dir->write_inventory(*inv));
    auto r = unwind_image_dir(fx.dir);
    REQUIRE(!r);
    REQUIRE(r.error().str().find("pre-dump") != std::string::npos);

    REQUIRE(!unwind_image_dir(fx.tmp.file("nothing-here")));
}

TEST_CASE("hostile: VMA paths naming devices and FIFOs are not opened as code") {
    Fixture fx;
    images::MmInfo mm = fx.read<images::MmInfo>(ImageType::Mm, fx.pid);
    std::string fifo = fx.tmp.file("fifo");
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    int n = 0;
    for (images::Vma& v : *mm.mutable_vmas()) {
        if (v.kind() != images::VMA_FILE_PRIVATE)
            continue;
        v.set_path(n++ % 2 ? fifo : "/dev/zero");
    }
    fx.write(ImageType::Mm, mm, fx.pid);
    ProcessBacktrace p = fx.unwind_one();
    REQUIRE(p.error.empty());
    REQUIRE(!p.warnings.empty());
    // No code is readable now; frame 0 still comes from the registers.
    for (const ThreadBacktrace& t : p.threads) {
        REQUIRE(!t.frames.empty());
        REQUIRE(t.frames[0].symbol.empty());
    }
}
