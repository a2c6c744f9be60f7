#include "migrate/track/soft_dirty_tracker.h"

#include <fcntl.h>
#include <unistd.h>

#include "criu/core/pagemap_scan.h"
#include "criu/core/unique_fd.h"
#include "migrate/track/maps_diff.h"

namespace criu {

namespace {
constexpr size_t kWordsPerRead = 8192;
// A swap entry of type 31 is a PTE marker (uffd-wp, guard, poison), not swapped data.
bool holds_data(uint64_t w) {
    if (w & kPmPresent)
        return true;
    return (w & kPmSwap) && !(w & kPmGuardRegion) && (w & 0x1f) != 0x1f;
}
}  // namespace

void classify_pagemap_words(uint64_t base, std::span<const uint64_t> words, DirtySet& out) {
    for (size_t i = 0; i < words.size(); ++i) {
        uint64_t w = words[i];
        uint64_t a = base + i * kTrackPageSize;
        if (!holds_data(w)) {
            out.written.add(a, a + kTrackPageSize);
            out.zeroed.add(a, a + kTrackPageSize);
        } else if (w & kPmSoftDirty) {
            out.written.add(a, a + kTrackPageSize);
        }
    }
}

Status SoftDirtyTracker::clear_refs() {
    std::string path = fmt::format("/proc/{}/clear_refs", pid_);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || write(fd.get(), "4", 1) != 1)
        return fail_errno("pid {}: cannot clear soft-dirty bits through {}", pid_, path);
    return {};
}

Expected<std::unique_ptr<SoftDirtyTracker>> SoftDirtyTracker::create(pid_t pid, Log& log) {
    uint64_t st = TRY(read_start_time(pid));
    std::unique_ptr<SoftDirtyTracker> t(new SoftDirtyTracker(pid, st, log));
    t->prev_maps_ = TRY(read_maps(pid));
    TRY_VOID(t->clear_refs());
    return t;
}

Expected<std::unique_ptr<SoftDirtyTracker>> SoftDirtyTracker::resume(pid_t pid, uint64_t start_time, Log& log) {
    if (TRY(read_start_time(pid)) != start_time)
        return failf(ESRCH, "pid {} is another process now", pid);
    std::unique_ptr<SoftDirtyTracker> t(new SoftDirtyTracker(pid, start_time, log));
    // New VMAs since the clear carry VM_SOFTDIRTY: the bits alone tell.
    t->prev_maps_ = TRY(read_maps(pid));
    return t;
}

Expected<DirtySet> SoftDirtyTracker::collect() {
    auto t0 = std::chrono::steady_clock::now();
    if (TRY(read_start_time(pid_)) != start_time_)
        return failf(ESRCH, "pid {} is another process now", pid_);
    // Reading the bits and clearing them are two steps: a write in between would be lost, so
    // the process must not run meanwhile. A caller that holds it stopped already is its tracer.
    std::unique_ptr<SeizedProcess> stopped;
    ProcStatus status = TRY(read_status(pid_));
    if (status.tracer_pid != getpid())
        stopped = TRY_CTX(SeizedProcess::seize(pid_, *log_), "pid {}: stopping it to read soft-dirty bits", pid_);
    std::vector<MapsEntry> maps = TRY(read_maps(pid_));
    std::string path = fmt::format("/proc/{}/pagemap", pid_);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("pid {}: cannot open {}", pid_, path);
    DirtySet d;
    std::vector<uint64_t> words(kWordsPerRead);
    for (const MapsEntry& m : maps) {
        if (vma_is_special(m))
            continue;
        for (uint64_t a = m.start; a < m.end;) {
            size_t n = std::min<uint64_t>(kWordsPerRead, (m.end - a) / kTrackPageSize);
            ssize_t got = pread(fd.get(), words.data(), n * 8, off_t(a / kTrackPageSize * 8));
            if (got <= 0)
                return fail_errno("pid {}: reading {} at {:#x}", pid_, path, a);
            size_t k = size_t(got) / 8;
            classify_pagemap_words(a, std::span(words.data(), k), d);
            a += k * kTrackPageSize;
        }
    }
    // New VMAs carry VM_SOFTDIRTY (all pages read dirty) but the diff costs nothing to add.
    for (const MapsEntry& m : maps)
        if (!vma_is_special(m) &&
            (vma_content_untrackable(m) || diff_maps(prev_maps_, {m}).added.overlaps(m.start, m.end)))
            d.written.add(m.start, m.end);
    TRY_VOID(clear_refs());
    prev_maps_ = std::move(maps);
    last_.collect_us = uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    last_.written_pages = d.written.pages();
    last_.zeroed_pages = d.zeroed.pages();
    return d;
}

}  // namespace criu
