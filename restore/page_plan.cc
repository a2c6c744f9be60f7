#include "restore/page_plan.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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

    // Raw pages go straight from the disk into the restored process's memory: a buffered
    // read would first allocate a page-cache page for every page (fresh memory, the most
    // expensive thing on these machines, MACHINE-LIMITS.md) and copy it. The twin is a new
    // open file description, so O_DIRECT does not leak into the reader's own fd. Where the
    // filesystem refuses O_DIRECT the blob reads through the buffered fd.
    void add_direct_twins() {
        std::map<int, int> twin_of;
        for (auto& r : plan.runs) {
            if (r.source < 0 || r.source == memfd_slot || r.offset % kPageSize != 0)
                continue;
            auto [it, added] = twin_of.emplace(r.source, -1);
            if (added) {
                std::string self = "/proc/self/fd/" + std::to_string(plan.sources[size_t(r.source)]);
                UniqueFd fd(::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
                if (fd) {
                    plan.owned.push_back(std::move(fd));
                    it->second = int(plan.sources.size());
                    plan.sources.push_back(plan.owned.back().get());
                }
            }
            r.direct_source = it->second;
        }
    }

    // zstd pages are decoded once, here, into a memfd the blob preads like any pages file.
    // Planning only reserves the place; run_decodes() then decodes every frame straight into
    // the mapped memfd on two threads (decoding is the slow part, and both cores are free).
    struct DecodeTask {
        const PageReader* level;
        size_t entry;
        uint64_t start, end;  // the part of the entry wanted
        uint64_t at;          // in the memfd
    };
    std::vector<DecodeTask> tasks;

    Expected<uint64_t> reserve_decoded(const PageReader& level, const PageEntry& e, uint64_t s, uint64_t t) {
        if (memfd_slot < 0) {
            UniqueFd fd(::memfd_create("criu-restore-pages", MFD_CLOEXEC));
            if (!fd)
                return fail_errno("memfd_create for decoded pages");
            plan.owned.push_back(std::move(fd));
            memfd_slot = int(plan.sources.size());
            plan.sources.push_back(plan.owned.back().get());
        }
        uint64_t at = memfd_size;
        tasks.push_back({&level, size_t(&e - level.entries().data()), s, t, at});
        memfd_size += t - s;
        return at;
    }

    Status run_decodes() {
        if (tasks.empty())
            return {};
        int fd = plan.sources[size_t(memfd_slot)];
        if (::ftruncate(fd, off_t(memfd_size)) < 0)
            return fail_errno("pid {}: sizing the memfd for {} bytes of decoded pages", pid, memfd_size);
        void* m = ::mmap(nullptr, memfd_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            return fail_errno("pid {}: mapping the memfd for decoded pages", pid);
        char* base = static_cast<char*>(m);
        std::atomic<size_t> next{0};
        std::mutex mu;
        std::optional<Error> first_error;
        auto work = [&] {
            auto z = PageReader::make_decoder();
            std::vector<char> whole;
            for (size_t i; (i = next.fetch_add(1)) < tasks.size();) {
                const DecodeTask& d = tasks[i];
                const PageEntry& e = d.level->entries()[d.entry];
                char* to = base + d.at;
                Status st;
                if (d.start == e.vaddr && d.end == e.end()) {
                    st = d.level->decode_entry(e, to, *z);
                } else {
                    whole.resize(e.size());
                    st = d.level->decode_entry(e, whole.data(), *z);
                    if (st)
                        std::memcpy(to, whole.data() + (d.start - e.vaddr), d.end - d.start);
                }
                if (!st) {
                    std::lock_guard lk(mu);
                    if (!first_error)
                        first_error = st.error();
                    next = tasks.size();
                    return;
                }
            }
        };
        {
            std::jthread helper(work);
            work();
        }
        ::munmap(m, memfd_size);
        if (first_error)
            return std::unexpected(std::move(*first_error));
        return {};
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
                uint64_t at = TRY(reserve_decoded(level, e, s, t));
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

bool vma_can_be_lazy(const images::Vma& v) {
    switch (v.kind()) {
    case images::VMA_ANON_PRIVATE:
    case images::VMA_STACK:
    case images::VMA_HEAP:
        return (v.prot() & PROT_WRITE) != 0;
    default:
        return false;
    }
}

Expected<PagePlan> plan_pages(PageReader& reader, const images::MmInfo& mm, pid_t pid, bool lazy) {
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
            if (lazy && vma_can_be_lazy(v)) {
                if (p.plan.lazy_ranges.empty() || p.plan.lazy_ranges.back().first != v.start())
                    p.plan.lazy_ranges.emplace_back(v.start(), v.end());
                if (!e.zero())
                    p.plan.pages_lazy += (stop - cur) / kPageSize;
            } else {
                TRY_VOID_CTX(p.resolve(reader, cur, stop, !vma_zero_is_free(v), true), "pid {}", pid);
            }
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
    TRY_VOID(p.run_decodes());
    p.add_direct_twins();
    return std::move(p.plan);
}

}  // namespace criu
