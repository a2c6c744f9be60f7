#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <cstring>
#include <thread>

#include "restore/lazy_fill.h"

using namespace criu;

namespace {

constexpr uint64_t kP = 4096;
constexpr uint64_t kW = LazyServer::kWindow;

uint64_t total_len(const std::vector<LazyPiece>& ps) {
    uint64_t n = 0;
    for (const auto& p : ps)
        n += p.end - p.start;
    return n;
}

// The byte the image holds at image address `a`.
char image_byte(uint64_t a) { return char((a / kP) * 31 + a % 251); }

}  // namespace

TEST_CASE("lazy tracker: a fault gets its whole window, its own run first") {
    LazyTracker t;
    const uint64_t base = 0x40000000;
    t.add(base, base + 3 * kW);
    REQUIRE(t.missing_pages() == 3 * kW / kP);
    uint64_t addr = base + kW + 100 * kP + 17;
    auto ps = t.on_fault(addr, kW);
    REQUIRE(ps.size() == 1);
    CHECK(ps[0] == LazyPiece{base + kW, base + 2 * kW, base + kW});
    t.settle(base + kW + 10 * kP, base + kW + 20 * kP);  // say the process dropped these
    ps = t.on_fault(addr, kW);
    REQUIRE(ps.size() == 2);
    CHECK(ps[0].start == base + kW + 20 * kP);  // the run holding addr
    CHECK(ps[0].end == base + 2 * kW);
    CHECK(ps[1] == LazyPiece{base + kW, base + kW + 10 * kP, base + kW});
    CHECK(total_len(ps) == kW - 10 * kP);
    // A settled page is owed nothing: the fault gets the zero page.
    CHECK(t.on_fault(base + kW + 15 * kP, kW).empty());
    // Outside every range too.
    CHECK(t.on_fault(base - kP, kW).empty());
    CHECK(t.on_fault(base + 3 * kW, kW).empty());
    // The window is clipped to the range.
    LazyTracker u;
    u.add(base + kP, base + 5 * kP);
    ps = u.on_fault(base + 4 * kP, kW);
    REQUIRE(ps.size() == 1);
    CHECK(ps[0] == LazyPiece{base + kP, base + 5 * kP, base + kP});
}

TEST_CASE("lazy tracker: background pieces in address order until nothing is missing") {
    LazyTracker t;
    t.add(0x10000, 0x10000 + 3 * kP);
    t.add(0x10000 + 3 * kP, 0x10000 + 5 * kP);  // adjacent: one range
    t.add(0x80000, 0x80000 + kP);
    CHECK(t.total_pages() == 6);
    auto p = t.next_missing(2 * kP);
    REQUIRE(p);
    CHECK(*p == LazyPiece{0x10000, 0x10000 + 2 * kP, 0x10000});
    t.settle(p->start, p->end);
    p = t.next_missing(kW);
    REQUIRE(p);
    CHECK(*p == LazyPiece{0x10000 + 2 * kP, 0x10000 + 5 * kP, 0x10000 + 2 * kP});
    t.settle(p->start, p->end);
    p = t.next_missing(kW);
    REQUIRE(p);
    CHECK(p->start == 0x80000);
    t.settle(p->start, p->end);
    t.settle(p->start, p->end);  // twice is harmless
    CHECK(t.missing_pages() == 0);
    CHECK_FALSE(t.next_missing(kW));
}

TEST_CASE("lazy tracker: memory moved by mremap is owed at its new place with its old data") {
    LazyTracker t;
    t.add(0x100000, 0x100000 + 8 * kP);
    t.settle(0x100000 + 2 * kP, 0x100000 + 3 * kP);  // page 2 already in
    t.remap(0x100000 + kP, 0x900000, 4 * kP);        // pages 1..4 move
    CHECK(t.missing_pages() == 7);                   // moved, not filled; page 2 moved along filled
    CHECK(t.on_fault(0x100000 + kP, kW).empty());    // the old place is gone
    auto ps = t.on_fault(0x900000 + 3 * kP, kW);
    REQUIRE(ps.size() == 2);
    CHECK(ps[0] == LazyPiece{0x900000 + 2 * kP, 0x900000 + 4 * kP, 0x100000 + 3 * kP});
    CHECK(ps[1] == LazyPiece{0x900000, 0x900000 + kP, 0x100000 + kP});
    CHECK(t.on_fault(0x900000 + kP, kW).empty());  // that one was filled before the move
}

TEST_CASE("lazy server: faults and background filling through a real userfaultfd") {
    const uint64_t len = 3 * kW;
    char* mem = static_cast<char*>(mmap(nullptr, len + kW, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(mem != MAP_FAILED);
    const uint64_t base = reinterpret_cast<uint64_t>(mem);
    int fd = int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    INFO("userfaultfd: " << std::strerror(errno));
    REQUIRE(fd >= 0);  // root (CI runs as root): kernel-mode faults included
    UniqueFd uffd(fd);
    uffdio_api api{UFFD_API, UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP, 0};
    REQUIRE(ioctl(fd, UFFDIO_API, &api) == 0);
    uffdio_register reg{};
    reg.range = {base, len + kW};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    REQUIRE(ioctl(fd, UFFDIO_REGISTER, &reg) == 0);

    // The image holds [base, base+len); the last window of the mapping is untouched memory.
    LazyTracker t;
    t.add(base, base + len);
    std::atomic<int> reads{0};
    auto src = [&](uint64_t a, uint64_t n, char* dst) -> Status {
        reads++;
        for (uint64_t i = 0; i < n; i++)
            dst[i] = image_byte(a + i);
        return {};
    };
    auto server_holder = std::make_unique<LazyServer>(4242, std::move(uffd), std::move(t), src);
    LazyServer& server = *server_holder;
    std::atomic<bool> stop{false}, background{false};
    std::string server_error;
    std::thread th([&] {
        while (!stop) {
            pollfd p{server.fd(), POLLIN, 0};
            poll(&p, 1, background ? 0 : 10);
            if (Status st = server.handle_events(); !st) {
                server_error = st.error().str();
                return;
            }
            if (background && !server.finished())
                if (auto b = server.fill_background(); !b) {
                    server_error = b.error().str();
                    return;
                }
        }
    });

    // A fault in the middle window brings that whole window in at once.
    uint64_t off = kW + 5 * kP + 123;
    CHECK(mem[off] == image_byte(base + off));
    CHECK(server.stats().faults == 1);
    CHECK(mem[kW + 400 * kP] == image_byte(base + kW + 400 * kP));
    CHECK(server.stats().faults == 1);  // no second fault in the same window
    // Untouched memory reads as zero.
    CHECK(mem[len + 7 * kP] == 0);
    // Dropped before it was filled: zero afterwards, never the old data.
    REQUIRE(madvise(mem + 10 * kP, 2 * kP, MADV_DONTNEED) == 0);
    CHECK(mem[10 * kP + 5] == 0);
    CHECK(mem[11 * kP] == 0);
    // The rest streams in.
    background = true;
    for (int i = 0; i < 500 && !server.finished(); i++)
        usleep(10000);
    stop = true;
    th.join();
    CHECK(server_error.empty());
    REQUIRE(server.finished());
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < len; i++) {
        bool dropped = i >= 10 * kP && i < 12 * kP;
        if (mem[i] != (dropped ? 0 : image_byte(base + i)))
            wrong++;
    }
    CHECK(wrong == 0);
    CHECK(server.stats().pages_copied == len / kP - 2);
    // Counted after the ioctl that already woke the reader: read only once the server stopped.
    CHECK(server.stats().pages_zero == 3);  // the untouched page and the two dropped ones
    // munmap waits until someone reads its UNMAP event: close the uffd first.
    server_holder.reset();
    munmap(mem, len + kW);
}
