#include "migrate/track/hash_tracker.h"

#include <sys/uio.h>

#include <cstring>

#include "criu/core/pagemap_scan.h"
#include "migrate/track/maps_diff.h"

namespace criu {

namespace {
constexpr size_t kChunkPages = 256;  // 1 MiB per process_vm_readv
}

uint64_t track_page_hash(const void* page) {
    // Four independent multiply-rotate lanes over the page's words, then mixed.
    const auto* w = static_cast<const uint64_t*>(page);
    uint64_t h[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
    for (size_t i = 0; i < kTrackPageSize / 8; i += 4)
        for (int k = 0; k < 4; ++k) {
            h[k] ^= w[i + k] * 0xff51afd7ed558ccdull;
            h[k] = (h[k] << 31 | h[k] >> 33) * 0xc4ceb9fe1a85ec53ull;
        }
    uint64_t r = h[0] ^ (h[1] << 1 | h[1] >> 63) ^ (h[2] << 2 | h[2] >> 62) ^ (h[3] << 3 | h[3] >> 61);
    r ^= r >> 33;
    r *= 0xff51afd7ed558ccdull;
    return r ^ (r >> 33);
}

DirtySet HashTracker::compare(const std::vector<PageHash>& prev, const std::vector<PageHash>& cur) {
    DirtySet d;
    size_t i = 0;
    for (const PageHash& c : cur) {
        while (i < prev.size() && prev[i].vaddr < c.vaddr) {
            // Had data, has none now: dropped.
            d.written.add(prev[i].vaddr, prev[i].vaddr + kTrackPageSize);
            d.zeroed.add(prev[i].vaddr, prev[i].vaddr + kTrackPageSize);
            ++i;
        }
        if (i < prev.size() && prev[i].vaddr == c.vaddr) {
            if (prev[i].hash != c.hash)
                d.written.add(c.vaddr, c.vaddr + kTrackPageSize);
            ++i;
        } else {
            d.written.add(c.vaddr, c.vaddr + kTrackPageSize);
        }
    }
    for (; i < prev.size(); ++i) {
        d.written.add(prev[i].vaddr, prev[i].vaddr + kTrackPageSize);
        d.zeroed.add(prev[i].vaddr, prev[i].vaddr + kTrackPageSize);
    }
    return d;
}

Expected<std::vector<HashTracker::PageHash>> HashTracker::hash_all(const std::vector<MapsEntry>& maps,
                                                                   RangeSet& unreadable) {
    PagemapScanner scanner = TRY(PagemapScanner::open(pid_, true));
    std::vector<PageHash> out;
    std::vector<uint8_t> buf(kChunkPages * kTrackPageSize);
    for (const MapsEntry& m : maps) {
        if (vma_is_special(m))
            continue;
        auto regions = scanner.scan(m.start, m.end, kPageIsPresent | kPageIsSwapped, kPageIsPfnZero, 0);
        if (!regions) {
            unreadable.add(m.start, m.end);  // the VMA went away meanwhile
            continue;
        }
        for (const auto& r : *regions) {
            for (uint64_t a = r.start; a < r.end;) {
                size_t n = std::min<uint64_t>(kChunkPages, (r.end - a) / kTrackPageSize);
                iovec local{buf.data(), n * kTrackPageSize};
                iovec remote{reinterpret_cast<void*>(a), n * kTrackPageSize};
                ssize_t got = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
                size_t ok = got > 0 ? size_t(got) / kTrackPageSize : 0;
                for (size_t k = 0; k < ok; ++k)
                    out.push_back({a + k * kTrackPageSize, track_page_hash(buf.data() + k * kTrackPageSize)});
                if (ok < n) {
                    // PROT_NONE or unmapped meanwhile: dirty, the copy decides what it is.
                    unreadable.add(a + ok * kTrackPageSize, a + n * kTrackPageSize);
                }
                a += n * kTrackPageSize;
            }
        }
    }
    return out;
}

Expected<std::unique_ptr<HashTracker>> HashTracker::create(pid_t pid, Log& log) {
    uint64_t st = TRY(read_start_time(pid));
    std::unique_ptr<HashTracker> t(new HashTracker(pid, st, log));
    t->prev_maps_ = TRY(read_maps(pid));
    RangeSet unreadable;
    t->hashes_ = TRY(t->hash_all(t->prev_maps_, unreadable));
    return t;
}

Expected<DirtySet> HashTracker::collect() {
    auto t0 = std::chrono::steady_clock::now();
    if (TRY(read_start_time(pid_)) != start_time_)
        return failf(ESRCH, "pid {} is another process now", pid_);
    std::vector<MapsEntry> maps = TRY(read_maps(pid_));
    RangeSet unreadable;
    std::vector<PageHash> cur = TRY(hash_all(maps, unreadable));
    DirtySet d = compare(hashes_, cur);
    d.written.add(unreadable);
    d.written.add(diff_maps(prev_maps_, maps).added);
    d.zeroed = d.zeroed.subtract(unreadable);
    hashes_ = std::move(cur);
    prev_maps_ = std::move(maps);
    last_.collect_us = uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    last_.written_pages = d.written.pages();
    last_.zeroed_pages = d.zeroed.pages();
    return d;
}

}  // namespace criu
