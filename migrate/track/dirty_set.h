// Sets of page ranges for dirty tracking: RangeSet (sorted, disjoint, page aligned, adjacent
// ranges merged) and DirtySet, what DirtyTracker::collect() returns for one round.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"

namespace criu {

inline constexpr uint64_t kTrackPageSize = 4096;

struct PageRange {
    uint64_t start = 0;
    uint64_t end = 0;
    uint64_t pages() const { return (end - start) / kTrackPageSize; }
    bool operator==(const PageRange&) const = default;
};

// Sorted, disjoint, page-aligned ranges; touching ranges are merged, so two sets holding the same
// pages compare equal.
class RangeSet {
public:
    RangeSet() = default;
    RangeSet(std::initializer_list<PageRange> rs) {
        for (const auto& r : rs)
            add(r.start, r.end);
    }

    // [start, end) widened to page boundaries; empty ranges are ignored. Appending in address
    // order is O(1); anything else is an insertion with merging.
    void add(uint64_t start, uint64_t end);
    void add(const PageRange& r) { add(r.start, r.end); }
    void add(const RangeSet& o);

    RangeSet intersect(const RangeSet& o) const;
    RangeSet subtract(const RangeSet& o) const;
    bool contains(uint64_t addr) const;
    // Whether any page of [start, end) is in the set.
    bool overlaps(uint64_t start, uint64_t end) const;

    uint64_t pages() const;
    bool empty() const { return ranges_.empty(); }
    void clear() { ranges_.clear(); }
    const std::vector<PageRange>& ranges() const { return ranges_; }
    bool operator==(const RangeSet&) const = default;

    // "0x1000-0x3000 0x8000-0x9000" (for logs and tests).
    std::string str() const;

private:
    std::vector<PageRange> ranges_;
};

// What one DirtyTracker::collect() round found.
struct DirtySet {
    // Pages whose content may differ from what they held at the previous collect (or at
    // start()): written pages, pages of VMAs that are new or were moved since, and pages of
    // VMAs that cannot be tracked at all. A copy must read these again; everything else is
    // as it was.
    RangeSet written;
    // The part of `written` that is known to read as zero or "from the file" now (written,
    // then dropped with MADV_DONTNEED: no page behind it). A copy records these as holes and
    // must never keep the older data.
    RangeSet zeroed;

    bool empty() const { return written.empty(); }
    void merge(const DirtySet& o);

    // Binary form for the tracking agent's socket: u64 n | n x {u64 start, u64 end} for
    // written, then the same for zeroed.
    std::string encode() const;
    // Validates everything (sorted, disjoint, page aligned, below 2^56, zeroed within written,
    // at most `max_ranges` ranges); `what` names the source in errors.
    static Expected<DirtySet> decode(std::string_view data, std::string_view what, size_t max_ranges = 1u << 24);
};

}  // namespace criu
