#include "migrate/track/dirty_set.h"

#include <algorithm>
#include <cstring>

namespace criu {

namespace {

constexpr uint64_t kMaxAddress = 1ull << 56;  // 5-level paging user space

uint64_t page_down(uint64_t a) { return a & ~(kTrackPageSize - 1); }
uint64_t page_up(uint64_t a) { return (a + kTrackPageSize - 1) & ~(kTrackPageSize - 1); }

void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

}  // namespace

void RangeSet::add(uint64_t start, uint64_t end) {
    start = page_down(start);
    end = page_up(end);
    if (start >= end)
        return;
    if (ranges_.empty() || ranges_.back().end < start) {
        ranges_.push_back({start, end});
        return;
    }
    if (ranges_.back().end == start) {
        ranges_.back().end = end;
        return;
    }
    // First range that ends at or after `start`: it and the following ones up to the first that
    // starts after `end` fold into one.
    auto first = std::lower_bound(ranges_.begin(), ranges_.end(), start,
                                  [](const PageRange& r, uint64_t a) { return r.end < a; });
    auto last = first;
    while (last != ranges_.end() && last->start <= end)
        ++last;
    if (first == last) {
        ranges_.insert(first, {start, end});
        return;
    }
    PageRange merged{std::min(start, first->start), std::max(end, std::prev(last)->end)};
    auto pos = ranges_.erase(first, last);
    ranges_.insert(pos, merged);
}

void RangeSet::add(const RangeSet& o) {
    if (o.empty())
        return;
    if (empty() || ranges_.back().end <= o.ranges_.front().start) {
        for (const auto& r : o.ranges_)
            add(r.start, r.end);
        return;
    }
    // A linear merge of two sorted lists.
    std::vector<PageRange> a = std::move(ranges_);
    ranges_.clear();
    size_t i = 0, j = 0;
    while (i < a.size() || j < o.ranges_.size()) {
        const PageRange& r = (j == o.ranges_.size() || (i < a.size() && a[i].start <= o.ranges_[j].start))
                                 ? a[i++]
                                 : o.ranges_[j++];
        if (!ranges_.empty() && ranges_.back().end >= r.start)
            ranges_.back().end = std::max(ranges_.back().end, r.end);
        else
            ranges_.push_back(r);
    }
}

RangeSet RangeSet::intersect(const RangeSet& o) const {
    RangeSet out;
    size_t i = 0, j = 0;
    while (i < ranges_.size() && j < o.ranges_.size()) {
        uint64_t s = std::max(ranges_[i].start, o.ranges_[j].start);
        uint64_t e = std::min(ranges_[i].end, o.ranges_[j].end);
        if (s < e)
            out.ranges_.push_back({s, e});
        if (ranges_[i].end < o.ranges_[j].end)
            ++i;
        else
            ++j;
    }
    return out;
}

RangeSet RangeSet::subtract(const RangeSet& o) const {
    RangeSet out;
    size_t j = 0;
    for (const PageRange& r : ranges_) {
        uint64_t cur = r.start;
        while (j < o.ranges_.size() && o.ranges_[j].end <= cur)
            ++j;
        for (size_t k = j; k < o.ranges_.size() && o.ranges_[k].start < r.end; ++k) {
            if (o.ranges_[k].start > cur)
                out.ranges_.push_back({cur, o.ranges_[k].start});
            cur = std::max(cur, o.ranges_[k].end);
        }
        if (cur < r.end)
            out.ranges_.push_back({cur, r.end});
    }
    return out;
}

bool RangeSet::contains(uint64_t addr) const { return overlaps(page_down(addr), page_down(addr) + kTrackPageSize); }

bool RangeSet::overlaps(uint64_t start, uint64_t end) const {
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), start,
                               [](uint64_t a, const PageRange& r) { return a < r.end; });
    return it != ranges_.end() && it->start < end;
}

uint64_t RangeSet::pages() const {
    uint64_t n = 0;
    for (const auto& r : ranges_)
        n += r.pages();
    return n;
}

std::string RangeSet::str() const {
    std::string s;
    for (const auto& r : ranges_)
        s += fmt::format("{}{:#x}-{:#x}", s.empty() ? "" : " ", r.start, r.end);
    return s.empty() ? "(none)" : s;
}

void DirtySet::merge(const DirtySet& o) {
    // A page written again after being zeroed is data now; a page zeroed later is a hole.
    RangeSet still_zero = zeroed.subtract(o.written);
    written.add(o.written);
    still_zero.add(o.zeroed);
    zeroed = std::move(still_zero);
}

std::string DirtySet::encode() const {
    std::string out;
    for (const RangeSet* s : {&written, &zeroed}) {
        put_u64(out, s->ranges().size());
        for (const auto& r : s->ranges()) {
            put_u64(out, r.start);
            put_u64(out, r.end);
        }
    }
    return out;
}

Expected<DirtySet> DirtySet::decode(std::string_view data, std::string_view what, size_t max_ranges) {
    DirtySet ds;
    size_t off = 0;
    auto get = [&](uint64_t& v) -> bool {
        if (data.size() - off < sizeof v)
            return false;
        std::memcpy(&v, data.data() + off, sizeof v);
        off += sizeof v;
        return true;
    };
    const char* names[] = {"written", "zeroed"};
    RangeSet* sets[] = {&ds.written, &ds.zeroed};
    for (int k = 0; k < 2; ++k) {
        uint64_t n = 0;
        if (!get(n))
            return failf(EBADMSG, "{}: truncated before the {} count", what, names[k]);
        if (n > max_ranges || n > (data.size() - off) / 16)
            return failf(EBADMSG, "{}: {} ranges of {} pages do not fit the message", what, n, names[k]);
        uint64_t prev_end = 0;
        for (uint64_t i = 0; i < n; ++i) {
            uint64_t s = 0, e = 0;
            get(s);
            get(e);
            if (s % kTrackPageSize || e % kTrackPageSize || s >= e || e > kMaxAddress || (i && s <= prev_end))
                return failf(EBADMSG, "{}: {} range {} ({:#x}-{:#x}) is not page aligned, sorted and disjoint",
                             what, names[k], i, s, e);
            sets[k]->add(s, e);
            prev_end = e;
        }
    }
    if (off != data.size())
        return failf(EBADMSG, "{}: {} trailing bytes", what, data.size() - off);
    if (!ds.zeroed.subtract(ds.written).empty())
        return failf(EBADMSG, "{}: zeroed pages outside the written ones", what);
    return ds;
}

}  // namespace criu
