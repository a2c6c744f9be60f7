// Post-copy: which pages of a restored process are still to be filled, and the serving of its
// userfaultfd. The restorer leaves the lazy VMAs empty and registers them (MISSING mode); the
// lazy-pages daemon answers each fault with the 2 MiB window around it (one fault per 4 KiB
// page costs ~20 us here, MACHINE-LIMITS.md) and streams the rest in the background.
//
// Only pages the images hold are tracked. A fault anywhere else in a registered VMA (memory
// the process never touched before the dump, or dropped since the restore) gets the zero page,
// which is what an anonymous mapping reads there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

// [start, end) in the process now; its data is at image address `src` (they differ once the
// process has moved the memory with mremap).
struct LazyPiece {
    uint64_t start = 0;
    uint64_t end = 0;
    uint64_t src = 0;
    bool operator==(const LazyPiece&) const = default;
};

class LazyTracker {
public:
    // A range of image pages to fill, page aligned; ranges are added in address order.
    void add(uint64_t start, uint64_t end);

    // Pieces still missing in the `window`-aligned block around `addr`, the one holding `addr`
    // first. Empty when `addr` is not a page the tracker still owes (serve the zero page).
    std::vector<LazyPiece> on_fault(uint64_t addr, uint64_t window) const;
    // The next missing piece in address order, at most `max_len` bytes.
    std::optional<LazyPiece> next_missing(uint64_t max_len) const;

    // Pages that need nothing more: copied in, or dropped/unmapped by the process.
    void settle(uint64_t start, uint64_t end);
    // The process moved [from, from+len) to `to` (mremap): what was missing there is now
    // missing at the new place, with the same data.
    void remap(uint64_t from, uint64_t to, uint64_t len);

    uint64_t missing_pages() const { return missing_; }
    uint64_t total_pages() const { return total_; }

private:
    struct Range {
        uint64_t start, end, src;
        std::vector<bool> done;  // per page
        uint64_t missing;
    };
    // Newest first wins: a range created by remap() may cover addresses of an older one.
    const Range* find(uint64_t addr) const;
    std::vector<Range> ranges_;
    uint64_t missing_ = 0;
    uint64_t total_ = 0;
};

struct LazyServerStats {
    uint64_t faults = 0;
    uint64_t pages_copied = 0;  // on a fault or in the background
    uint64_t pages_zero = 0;    // zero pages served on faults
    uint64_t copy_calls = 0;
};

// Serves one process's userfaultfd from `read_src` (fills [src, src+len) of image memory).
class LazyServer {
public:
    using Source = std::function<Status(uint64_t src, uint64_t len, char* dst)>;
    static constexpr uint64_t kWindow = 2u << 20;

    LazyServer(int pid, UniqueFd uffd, LazyTracker tracker, Source read_src);

    int fd() const { return uffd_.get(); }
    int pid() const { return pid_; }
    // Answers every queued event (the fd is non-blocking).
    Status handle_events();
    // Copies one missing piece of at most kWindow bytes; false when nothing is missing.
    Expected<bool> fill_background();
    // Every tracked page is in, or the process is gone.
    bool finished() const { return gone_ || tracker_.missing_pages() == 0; }
    bool gone() const { return gone_; }
    const LazyTracker& tracker() const { return tracker_; }
    const LazyServerStats& stats() const { return stats_; }

private:
    // Copies the piece in; false when the kernel asked to retry after the pending events
    // (EAGAIN, or ENOENT before the event about it was read), or the process is gone.
    Expected<bool> copy(const LazyPiece& p);
    Status zero_page(uint64_t addr);

    // A copy that found its target unmapped (ENOENT) before any event said so; see copy().
    struct Unmapped {
        uint64_t addr;
        std::chrono::steady_clock::time_point since;
    };
    static constexpr std::chrono::seconds kNoEventLimit{5};

    int pid_;
    UniqueFd uffd_;
    std::optional<Unmapped> unmapped_;
    LazyTracker tracker_;
    Source read_src_;
    std::vector<char> buf_;
    bool gone_ = false;
    LazyServerStats stats_;
};

}  // namespace criu
