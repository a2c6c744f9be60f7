#include "restore/page_plan.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace criu {
namespace {

struct Planner {
    PageReader& top;
    const images::MmInfo& mm;
    pid_t pid;
    PagePlan plan;
    std::map<int, int> slot_of_fd;
    int memfd_slot = -1;
    uint64_t memfd_size = 0;
    std::vector<char> buf;

    int slot_for(int fd) {
        auto [it, added] = slot_of_fd.emplace(fd, int(plan.sources.size()));
        if (added)
            plan.sources.push_back(fd);
        return it->second;
    }

    void add(uint64_t vaddr, uint64_t pages, int source, uint64_t offset) {
        if (!plan.runs.empty()) {
            PlannedRun& last = plan.runs.back();
            bool adjacent = last.vaddr + last.nr_pages * kPageSize == vaddr && last.source == source &&
                            (source < 0 || last.offset + last.nr_pages * kPageSize == offset);
            if (adjacent) {
                last.nr_pages += pages;
                return;
            }
        }
        plan.runs.push_back({vaddr, pages, source, offset});
    }

    // zstd pages are decoded once, here, into a memfd the blob preads like any pages file.
    Expected<uint64_t> decode_to_memfd(uint64_t vaddr, uint64_t pages) {
        if (memfd_slot < 0) {
            UniqueFd fd(::memfd_create("criu-restore-pages", MFD_CLOEXEC));
            if (!fd)
                return fail_errno("memfd_create for decoded pages");
            plan.owned.push_back(std::move(fd));
            memfd_slot = int(plan.sources.size());
            plan.sources.push_back(plan.owned.back().get());
        }
        uint64_t at = memfd_size;
        for (uint64_t done = 0; done < pages;) {
            uint64_t n = std::min<uint64_t>(pages - done, kMaxFramePages);
            buf.resize(n * kPageSize);
            TRY_VOID(top.read_range(vaddr + done * kPageSize, n, buf.data()));
            size_t off = 0;
            while (off < buf.size()) {
                ssize_t w = ::pwrite(plan.sources[size_t(memfd_slot)], buf.data() + off, buf.size() - off,
                                     off_t(memfd_size + off));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return fail_errno("writing decoded pages for pid {} into a memfd", pid);
                off += size_t(w);
            }
            memfd_size += buf.size();
            done += n;
        }
        return at;
    }

    // Resolves [start, end) in `level`; below the top level every page must be covered.
    Status resolve(const PageReader& level, uint64_t start, uint64_t end, bool zero_needed, bool is_top) {
        const auto& es = level.entries();
        auto it = std::upper_bound(es.begin(), es.end(), start,
                                   [](uint64_t a, const PageEntry& e) { return a < e.vaddr; });
        if (it != es.begin() && std::prev(it)->end() > start)
            --it;
        uint64_t cur = start;
        for (; it != es.end() && it->vaddr < end; ++it) {
            const PageEntry& e = *it;
            uint64_t s = std::max(start, e.vaddr), t = std::min(end, e.end());
            if (!is_top && s != cur)
                return failf(EINVAL, "{}: page {:#x} is marked as in this image but missing", level.pagemap_path(),
                             cur);
            cur = t;
            uint64_t pages = (t - s) / kPageSize;
            if (e.lazy() && !e.present())
                return failf(ENOTSUP, "{}: pages at {:#x} are lazy (post-copy); restore needs a page server for "
                                      "them", level.pagemap_path(), s);
            if (e.zero()) {
                if (zero_needed) {
                    add(s, pages, -1, 0);
                    plan.pages_zeroed += pages;
                }
            } else if (e.parent()) {
                if (!level.parent())
                    return failf(EINVAL, "{}: pages at {:#x} are in a parent image that is missing",
                                 level.pagemap_path(), s);
                TRY_VOID(resolve(*level.parent(), s, t, zero_needed, false));
            } else if (auto loc = level.raw_location(e)) {
                add(s, pages, slot_for(loc->fd), loc->offset + (s - e.vaddr));
                plan.pages_from_images += pages;
            } else {
                uint64_t at = TRY(decode_to_memfd(s, pages));
                add(s, pages, memfd_slot, at);
                plan.pages_from_images += pages;
            }
        }
        if (!is_top && cur < end)
            return failf(EINVAL, "{}: page {:#x} is marked as in this image but missing", level.pagemap_path(), cur);
        return {};
    }
};

}  // namespace

bool vma_takes_pages(images::VmaKind kind) {
    switch (kind) {
    case images::VMA_ANON_PRIVATE:
    case images::VMA_FILE_PRIVATE:
    case images::VMA_ANON_SHARED:
    case images::VMA_STACK:
    case images::VMA_HEAP:
    case images::VMA_MEMFD_SHARED:
    case images::VMA_MEMFD_PRIVATE:
        return true;
    default:
        return false;
    }
}

bool vma_mapped_anonymously(const images::Vma& v) {
    switch (v.kind()) {
    case images::VMA_ANON_PRIVATE:
    case images::VMA_STACK:
    case images::VMA_HEAP:
    case images::VMA_MEMFD_PRIVATE:
        return true;
    case images::VMA_FILE_PRIVATE:
        return v.file_deleted();
    default:
        return false;
    }
}

bool vma_zero_is_free(const images::Vma& v) {
    return v.kind() != images::VMA_FILE_PRIVATE || vma_mapped_anonymously(v);
}

Expected<PagePlan> plan_pages(PageReader& reader, const images::MmInfo& mm, pid_t pid) {
    Planner p{reader, mm, pid, {}, {}, -1, 0, {}};
    p.plan.vma_filled.assign(size_t(mm.vmas_size()), false);
    const auto& entries = reader.entries();
    // VMAs are sorted and disjoint (validate_vmas); walk both lists together.
    int vi = 0;
    for (size_t k = 0; k < entries.size(); k++) {
        const PageEntry& e = entries[k];
        uint64_t cur = e.vaddr;
        while (cur < e.end()) {
            while (vi < mm.vmas_size() &&
                   (mm.vmas(vi).end() <= cur || mm.vmas(vi).kind() == images::VMA_VSYSCALL))
                vi++;
            if (vi == mm.vmas_size() || mm.vmas(vi).start() > cur)
                return failf(EINVAL, "pid {}: {}: entry {} ({:#x}, {} pages): page {:#x} is outside every VMA",
                             pid, reader.pagemap_path(), k + 1, e.vaddr, e.nr_pages, cur);
            const auto& v = mm.vmas(vi);
            if (!vma_takes_pages(v.kind()))
                return failf(EINVAL, "pid {}: {}: entry {} ({:#x}): page {:#x} lies in a {} VMA, which takes no "
                                     "dumped pages", pid, reader.pagemap_path(), k + 1, e.vaddr, cur,
                             images::VmaKind_Name(v.kind()));
            uint64_t stop = std::min(e.end(), v.end());
            TRY_VOID_CTX(p.resolve(reader, cur, stop, !vma_zero_is_free(v), true), "pid {}", pid);
            cur = stop;
        }
    }
    // Adjacent runs merge across entries but never across VMAs: re-split at VMA boundaries so
    // each run's target is one mapping (the blob's writes then never straddle protections).
    std::vector<PlannedRun> split;
    split.reserve(p.plan.runs.size());
    int v2 = 0;
    for (const auto& r : p.plan.runs) {
        uint64_t cur = r.vaddr, end = r.vaddr + r.nr_pages * kPageSize;
        while (cur < end) {
            while (mm.vmas(v2).end() <= cur || mm.vmas(v2).kind() == images::VMA_VSYSCALL)
                v2++;
            uint64_t stop = std::min(end, mm.vmas(v2).end());
            split.push_back({cur, (stop - cur) / kPageSize, r.source,
                             r.source < 0 ? 0 : r.offset + (cur - r.vaddr)});
            p.plan.vma_filled[size_t(v2)] = true;
            cur = stop;
        }
    }
    p.plan.runs = std::move(split);
    return std::move(p.plan);
}

}  // namespace criu
