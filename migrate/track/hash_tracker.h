// Dirty tracking by content: a 64-bit hash of every page that holds data, compared with the
// previous round's. Exact for what matters (a changed page always differs in content; a hash
// collision would need a crafted page, and a process can only fool its own dump), but every
// round reads all memory. The last resort when neither uffd-wp nor soft-dirty works.
#pragma once

#include <vector>

#include "criu/core/proc_parse.h"
#include "migrate/track/dirty_tracker.h"

namespace criu {

class HashTracker final : public DirtyTracker {
public:
    // Hashes every page now (the baseline).
    static Expected<std::unique_ptr<HashTracker>> create(pid_t pid, Log& log);

    Expected<DirtySet> collect() override;
    std::string_view method() const override { return "hash"; }

    struct PageHash {
        uint64_t vaddr;
        uint64_t hash;
    };
    // Pure part, for tests: what changed from `prev` to `cur` (both sorted by address);
    static DirtySet compare(const std::vector<PageHash>& prev, const std::vector<PageHash>& cur);

private:
    HashTracker(pid_t pid, uint64_t st, Log& log) : DirtyTracker(pid, st, log) {}
    // Hashes of every page with data; ranges that could not be read go to `unreadable`.
    Expected<std::vector<PageHash>> hash_all(const std::vector<MapsEntry>& maps, RangeSet& unreadable);

    std::vector<PageHash> hashes_;
    std::vector<MapsEntry> prev_maps_;
};

uint64_t track_page_hash(const void* page);

}  // namespace criu
