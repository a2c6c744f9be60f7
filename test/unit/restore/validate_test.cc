#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>

#include <cstring>

#include "restore/sigframe.h"
#include "restore/validate.h"
#include "restore_test_util.h"

using namespace criu;
using namespace criu::test;

namespace {

// The message of the refusal, or "" if the images were accepted.
std::string refusal(const RestoredProcessImages& p, const images::Inventory& inv = valid_inventory(),
                    const HostInfo& host = fake_host()) {
    auto st = validate_process(inv, p, host);
    return st ? "" : st.error().str();
}

void set_reg(images::ThreadCore& t, UserReg r, uint64_t v) {
    std::string g = t.gpregs();
    std::memcpy(g.data() + r * 8, &v, 8);
    t.set_gpregs(g);
}

}  // namespace

TEST_CASE("a consistent process image is accepted") {
    CHECK(refusal(valid_process()) == "");
}

TEST_CASE("overlapping, unordered or unaligned VMAs are refused") {
    {
        auto p = valid_process();
        p.mm.mutable_vmas(2)->set_start(kHeapStart + 0x20000);  // inside the heap
        CHECK_THAT(refusal(p), Catch::Contains("vma 2") && Catch::Contains("overlaps"));
    }
    {
        auto p = valid_process();
        p.mm.mutable_vmas(2)->set_end(kAnonStart + 0x1800);
        CHECK_THAT(refusal(p), Catch::Contains("not page aligned") && Catch::Contains("mm-4242.img"));
    }
    {
        auto p = valid_process();
        p.mm.mutable_vmas(6)->set_end(0x800000000000ull);
        CHECK_THAT(refusal(p), Catch::Contains("47-bit"));
    }
    {
        auto p = valid_process();
        p.mm.mutable_vmas(2)->set_end(kAnonStart);  // empty
        CHECK_THAT(refusal(p), Catch::Contains("empty"));
    }
    {
        auto p = valid_process();
        p.mm.mutable_vmas(2)->set_flags(MAP_PRIVATE | 0x40000 /* MAP_HUGETLB */);
        CHECK_THAT(refusal(p), Catch::Contains("mapping flags"));
    }
    {
        auto p = valid_process();
        p.mm.mutable_vmas(0)->set_path("relative/path");
        CHECK_THAT(refusal(p), Catch::Contains("absolute path"));
    }
}

// RestoredProcessImages stores messages by value; these helpers keep the tests short.
TEST_CASE("thread lists that disagree are refused") {
    {
        auto p = valid_process();
        p.core.mutable_threads()->RemoveLast();
        CHECK_THAT(refusal(p), Catch::Contains("1 threads, but pstree.img lists 2"));
    }
    {
        auto p = valid_process();
        p.core.mutable_threads(1)->set_tid(5000);
        CHECK_THAT(refusal(p), Catch::Contains("tid 5000") && Catch::Contains("4243"));
    }
    {
        auto p = valid_process();
        p.entry.set_threads(0, 4243);
        p.entry.set_threads(1, 4242);
        CHECK_THAT(refusal(p), Catch::Contains("must start with the pid"));
    }
    {
        auto p = valid_process();
        p.core.mutable_threads(1)->set_gpregs("short");
        CHECK_THAT(refusal(p), Catch::Contains("gpregs are 5 bytes"));
    }
    {
        auto p = valid_process();
        set_reg(*p.core.mutable_threads(0), kCs, 0x23);
        CHECK_THAT(refusal(p), Catch::Contains("only 64-bit code"));
    }
}

TEST_CASE("FPU state from another CPU kind is refused") {
    {
        auto p = valid_process();
        p.core.mutable_threads(0)->mutable_xsave()->resize(1088);
        CHECK_THAT(refusal(p), Catch::Contains("XSAVE area is 1088 bytes but this CPU's is 2432"));
    }
    {
        auto p = valid_process();
        uint64_t bv = 1ull << 17;  // AMX tile config: not in XCR0 0xe7
        std::memcpy(p.core.mutable_threads(1)->mutable_xsave()->data() + 512, &bv, 8);
        CHECK_THAT(refusal(p), Catch::Contains("tid 4243") && Catch::Contains("does not enable"));
    }
    {
        auto inv = valid_inventory();
        inv.set_xsave_size(1088);
        CHECK_THAT(refusal(valid_process(), inv), Catch::Contains("inventory.img") && Catch::Contains("1088"));
    }
}

TEST_CASE("a vDSO layout this kernel does not have is refused") {
    auto p = valid_process();
    p.mm.mutable_vmas(4)->set_end(kVdsoBlock + 0x5000);  // [vvar_vclock] one page
    p.mm.mutable_vmas(5)->set_start(kVdsoBlock + 0x5000);
    p.mm.mutable_vmas(5)->set_end(kVdsoBlock + 0x7000);
    CHECK_THAT(refusal(p), Catch::Contains("vDSO proxy"));
    // A process without any vDSO is fine: the restorer's is dropped.
    auto q = valid_process();
    q.mm.mutable_vmas()->DeleteSubrange(3, 3);
    CHECK(refusal(q) == "");
}

TEST_CASE("signals, timers and per-thread values out of range are refused") {
    {
        auto p = valid_process();
        p.core.mutable_sigactions(0)->set_signo(SIGKILL);
        CHECK_THAT(refusal(p), Catch::Contains("signal 9"));
    }
    {
        auto p = valid_process();
        auto* t = p.core.add_posix_timers();
        t->set_id(3);
        t->set_sigev_notify(4 /* SIGEV_THREAD_ID */);
        t->set_signo(SIGALRM);
        t->set_notify_tid(999);
        CHECK_THAT(refusal(p), Catch::Contains("tid 999, which is not a thread"));
    }
    {
        auto p = valid_process();
        p.core.mutable_threads(0)->set_robust_list(0x1000);
        p.core.mutable_threads(0)->set_robust_list_len(16);
        CHECK_THAT(refusal(p), Catch::Contains("robust list length 16"));
    }
    {
        auto p = valid_process();
        p.core.mutable_threads(1)->add_pending()->set_siginfo(std::string(64, '\0'));
        CHECK_THAT(refusal(p), Catch::Contains("siginfo is 64 bytes"));
    }
    {
        auto p = valid_process();
        p.core.mutable_threads(1)->set_sched_policy(6);  // SCHED_DEADLINE
        CHECK_THAT(refusal(p), Catch::Contains("SCHED_DEADLINE"));
    }
    {
        auto p = valid_process();
        auto* f = p.core.add_seccomp();
        f->set_bpf(std::string(12, '\0'));
        CHECK_THAT(refusal(p), Catch::Contains("seccomp filter 0"));
    }
}
