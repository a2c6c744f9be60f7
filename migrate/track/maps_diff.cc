#include "migrate/track/maps_diff.h"

#include <algorithm>

namespace criu {

namespace {

bool anonymous(const MapsEntry& m) { return m.ino == 0 && m.dev_major == 0 && m.dev_minor == 0; }

// Whether page `addr` (inside both) is backed the same way by `a` and `b`.
bool same_backing(const MapsEntry& a, const MapsEntry& b, uint64_t addr) {
    if (a.shared != b.shared || anonymous(a) != anonymous(b))
        return false;
    if (anonymous(a))
        return a.path == b.path;  // "[heap]" vs "[stack]" vs plain anonymous
    if (a.dev_major != b.dev_major || a.dev_minor != b.dev_minor || a.ino != b.ino)
        return false;
    return a.pgoff + (addr - a.start) == b.pgoff + (addr - b.start);
}

}  // namespace

bool vma_is_special(const MapsEntry& m) {
    return m.path == "[vsyscall]" || m.path == "[vvar]" || m.path == "[vvar_vclock]" || m.path == "[vdso]" ||
           m.path == "[uprobes]";
}

bool vma_content_untrackable(const MapsEntry& m) {
    if (vma_is_special(m))
        return false;
    const std::string& p = m.path;
    if (m.shared)
        return p.empty() || p.starts_with("[anon") || p == "/dev/zero" || p.starts_with("/memfd:") ||
               p.starts_with("/SYSV");
    return m.deleted && p.starts_with("/");
}

MapsDiff diff_maps(const std::vector<MapsEntry>& prev, const std::vector<MapsEntry>& cur) {
    MapsDiff d;
    RangeSet cur_set;
    size_t j = 0;
    for (const MapsEntry& c : cur) {
        cur_set.add(c.start, c.end);
        if (vma_is_special(c))
            continue;
        while (j < prev.size() && prev[j].end <= c.start)
            ++j;
        uint64_t covered = c.start;  // pages of c before this are decided
        uint64_t before = d.added.pages();
        for (size_t k = j; k < prev.size() && prev[k].start < c.end; ++k) {
            const MapsEntry& p = prev[k];
            uint64_t s = std::max(c.start, p.start), e = std::min(c.end, p.end);
            if (s > covered)
                d.added.add(covered, s);
            if (!same_backing(p, c, s))
                d.added.add(s, e);
            covered = std::max(covered, e);
        }
        if (covered < c.end)
            d.added.add(covered, c.end);
        if (d.added.pages() != before)
            ++d.vmas_added;
    }
    RangeSet prev_set;
    for (const MapsEntry& p : prev)
        prev_set.add(p.start, p.end);
    d.removed = prev_set.subtract(cur_set);
    return d;
}

}  // namespace criu
