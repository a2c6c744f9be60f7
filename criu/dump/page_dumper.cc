#include "criu/dump/page_dumper.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "criu/core/pagemap_scan.h"
#include "criu/dump/page_hashes.h"
#include "images/page_sink.h"

namespace criu {

namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kBatchBytes = 4u << 20;
constexpr size_t kBatchPages = kBatchBytes / kPage;
// One buffer being read, up to three queued or being written: enough to keep both sides busy.
constexpr int kBuffers = 4;
constexpr size_t kMaxIov = 1024;  // IOV_MAX: process_vm_readv refuses more

alignas(64) const uint8_t kZeroPage[kPage] = {};

// A run of pages to read, or (parent_only) to record as in the parent image without reading.
struct Run {
    uint64_t start;
    uint64_t end;
    bool force;       // not readable by the target (PROT_NONE): read through /proc/PID/mem
    bool zero_holes;  // all-zero pages may be left out
    bool parent_only = false;
};

// Reads another process's memory by pid: process_vm_readv, and /proc/PID/mem (which reads
// through PROT_NONE) as the fallback. Works whether or not the process is stopped.
class ProcMem {
public:
    explicit ProcMem(pid_t pid) : pid_(pid) {}
    pid_t pid() const { return pid_; }
    Status read_force(uint64_t addr, void* buf, size_t len) {
        if (!fd_) {
            fd_.reset(::open(fmt::format("/proc/{}/mem", pid_).c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd_)
                return fail_errno("pid {}: cannot open /proc/{}/mem", pid_, pid_);
        }
        size_t done = 0;
        while (done < len) {
            ssize_t n = pread(fd_.get(), static_cast<char*>(buf) + done, len - done, off_t(addr + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return failf(n < 0 ? errno : EFAULT, "pid {}: reading /proc/{}/mem at {:#x}", pid_, pid_,
                             addr + done);
            done += size_t(n);
        }
        return {};
    }

private:
    pid_t pid_;
    UniqueFd fd_;
};

// Pages of a buffer that go to the writer as one add_pages call, or (parent) pages equal to
// the parent image's, recorded with add_parent.
struct Segment {
    uint64_t vaddr;
    uint32_t nr_pages;
    uint32_t buf_page;
    bool parent;
};

// A run of pages read into a buffer, at page `buf_page` of it.
struct Pending {
    uint64_t vaddr;
    size_t pages;
    size_t buf_page;
    bool force;
    bool zero_holes;
    bool parent_only = false;  // nothing read: recorded as in the parent
    bool unreadable = false;   // set by read_pending in tolerant mode: left out of the image
};

// A buffer on its way from the reading thread to the writer thread: what was read where, and
// (filled by the writer thread) what goes to the image.
struct Batch {
    uint8_t* buf = nullptr;
    std::vector<Pending> pend;
    std::vector<Segment> segs;
};

// A bounded hand-over between the reading thread and the writer thread.
class BatchQueue {
public:
    void push(Batch* b) {
        std::lock_guard l(m_);
        q_.push_back(b);
        cv_.notify_all();
    }
    // nullptr once closed and drained.
    Batch* pop() {
        std::unique_lock l(m_);
        cv_.wait(l, [&] { return !q_.empty() || closed_; });
        if (q_.empty())
            return nullptr;
        Batch* b = q_.front();
        q_.pop_front();
        return b;
    }
    void close() {
        std::lock_guard l(m_);
        closed_ = true;
        cv_.notify_all();
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Batch*> q_;
    bool closed_ = false;
};

// Decides, on the writer thread, what each page read becomes: dropped (all zero, where absent
// means zero), recorded as in the parent (its hash equals the parent image's hash of that
// address), or data. Hashing here rather than on the reading thread lets it overlap the next
// process_vm_readv. Also records the hash of every page kept when asked to.
struct Classifier {
    const PageHashes* parent = nullptr;
    PageHashes* hashes = nullptr;
    size_t parent_cursor = 0;
    uint64_t zero_pages = 0;
    uint64_t parent_pages = 0;
    std::vector<PageRange> unreadable;

    void segment(Batch& b) {
        for (const Pending& p : b.pend) {
            if (p.unreadable) {
                unreadable.push_back({p.vaddr, p.vaddr + p.pages * kPage});
                continue;
            }
            if (p.parent_only) {
                parent_pages += p.pages;
                // Unchanged since the parent: its hash still holds, and carrying it over keeps
                // this set's hash file whole for a dump that has to fall back to hashes.
                if (hashes && parent)
                    for (size_t i = 0; i < p.pages; ++i)
                        if (auto h = parent->find_from(parent_cursor, p.vaddr + i * kPage))
                            hashes->add(p.vaddr + i * kPage, *h);
                if (!b.segs.empty() && b.segs.back().parent &&
                    b.segs.back().vaddr + uint64_t(b.segs.back().nr_pages) * kPage == p.vaddr)
                    b.segs.back().nr_pages += uint32_t(p.pages);
                else
                    b.segs.push_back({p.vaddr, uint32_t(p.pages), 0, true});
                continue;
            }
            for (size_t i = 0; i < p.pages; ++i) {
                size_t bp = p.buf_page + i;
                uint64_t va = p.vaddr + i * kPage;
                const uint8_t* page = b.buf + bp * kPage;
                if (p.zero_holes && std::memcmp(page, kZeroPage, kPage) == 0) {
                    ++zero_pages;
                    continue;
                }
                bool from_parent = false;
                if (parent || hashes) {
                    uint64_t h = page_hash(page);
                    if (hashes)
                        hashes->add(va, h);
                    from_parent = parent && parent->find_from(parent_cursor, va) == h;
                }
                parent_pages += from_parent;
                if (!b.segs.empty()) {
                    Segment& last = b.segs.back();
                    if (last.parent == from_parent && last.vaddr + uint64_t(last.nr_pages) * kPage == va &&
                        (from_parent || last.buf_page + last.nr_pages == bp)) {
                        ++last.nr_pages;
                        continue;
                    }
                }
                b.segs.push_back({va, 1, static_cast<uint32_t>(bp), from_parent});
            }
        }
    }
};

// The writer thread and its buffers. The destructor always stops and joins the thread, so an
// error anywhere in the reader leaves no thread behind.
class WriterPipeline {
public:
    WriterPipeline(PageSink& pw, Classifier& cls) : pw_(pw), cls_(cls) {
        for (auto& b : batches_) {
            b.buf = static_cast<uint8_t*>(std::aligned_alloc(kPage, kBatchBytes));
            free_.push(&b);
        }
        thread_ = std::thread([this] { run(); });
    }
    ~WriterPipeline() {
        stop();
        for (auto& b : batches_)
            std::free(b.buf);
    }

    Batch* take_free() { return free_.pop(); }
    void submit(Batch* b) { full_.push(b); }
    // Stops after the queued batches; returns the writer's first error.
    Status stop() {
        if (thread_.joinable()) {
            full_.close();
            thread_.join();
        }
        std::lock_guard l(err_m_);
        if (err_)
            return std::unexpected(*err_);
        return {};
    }
    bool failed() {
        std::lock_guard l(err_m_);
        return err_.has_value();
    }
    uint64_t write_us() const { return write_us_; }

private:
    void run() {
        while (Batch* b = full_.pop()) {
            if (!failed()) {
                auto t0 = std::chrono::steady_clock::now();
                cls_.segment(*b);
                for (const Segment& s : b->segs) {
                    Status st = s.parent ? pw_.add_parent(s.vaddr, s.nr_pages)
                                         : pw_.add_pages(s.vaddr, b->buf + size_t(s.buf_page) * kPage, s.nr_pages);
                    if (!st) {
                        std::lock_guard l(err_m_);
                        err_ = std::move(st.error());
                        break;
                    }
                }
                write_us_ += micros_since(t0);
            }
            b->segs.clear();
            b->pend.clear();
            free_.push(b);
        }
    }

    PageSink& pw_;
    Classifier& cls_;  // used by the thread only until stop() returns
    Batch batches_[kBuffers];
    BatchQueue free_;
    BatchQueue full_;
    std::thread thread_;
    std::mutex err_m_;
    std::optional<Error> err_;
    uint64_t write_us_ = 0;  // written by the thread, read after join
};

// Reads the runs of one buffer. In tolerant mode (the process runs on) a range that cannot be
// read at all is marked unreadable instead of failing.
Status read_pending(ProcMem& mem, uint8_t* buf, std::vector<Pending>& pend, bool tolerant) {
    std::vector<iovec> remote;
    remote.reserve(pend.size());
    auto force = [&](Pending& p) -> Status {
        Status st = mem.read_force(p.vaddr, buf + p.buf_page * kPage, p.pages * kPage);
        if (!st && tolerant) {
            p.unreadable = true;
            return {};
        }
        return st;
    };
    size_t i = 0;
    while (i < pend.size()) {
        if (pend[i].parent_only) {
            ++i;
            continue;
        }
        if (pend[i].force) {
            TRY_VOID(force(pend[i]));
            ++i;
            continue;
        }
        // A stretch of readable runs: they sit back to back in the buffer, so one local iovec.
        size_t j = i;
        size_t bytes = 0;
        remote.clear();
        while (j < pend.size() && !pend[j].force && !pend[j].parent_only && remote.size() < kMaxIov) {
            remote.push_back({reinterpret_cast<void*>(pend[j].vaddr), pend[j].pages * kPage});
            bytes += pend[j].pages * kPage;
            ++j;
        }
        iovec local{buf + pend[i].buf_page * kPage, bytes};
        ssize_t got = process_vm_readv(mem.pid(), &local, 1, remote.data(), remote.size(), 0);
        if (got < 0)
            got = 0;  // retried piecewise below, which names the failing range
        if (static_cast<size_t>(got) < bytes) {
            // The transfer stops at the first range it cannot read; /proc/PID/mem reads
            // through protections, so retry the rest that way.
            size_t done = 0;
            for (size_t k = i; k < j; ++k) {
                size_t len = pend[k].pages * kPage;
                if (done + len > static_cast<size_t>(got))
                    TRY_VOID(force(pend[k]));
                done += len;
            }
        }
        i = j;
    }
    return {};
}

// Whether a pagemap word that says "swapped" is swapped data: not a PTE marker (swap type 31:
// uffd-wp markers on never-populated PTEs, KERNEL-NOTES pitfall 2; guard regions; poison).
bool swap_entry_is_data(uint64_t w) { return (w & kPmSwap) && !(w & kPmGuardRegion) && (w & 0x1f) != 0x1f; }

// The pages of [start, end) whose raw pagemap entry is real swapped data.
Expected<RangeSet> real_swap_pages(int pagemap_fd, pid_t pid, uint64_t start, uint64_t end) {
    RangeSet out;
    std::vector<uint64_t> words(8192);
    for (uint64_t a = start; a < end;) {
        size_t n = std::min<uint64_t>(words.size(), (end - a) / kPage);
        ssize_t got = pread(pagemap_fd, words.data(), n * 8, off_t(a / kPage * 8));
        if (got <= 0)
            return fail_errno("pid {}: reading /proc/{}/pagemap at {:#x}", pid, pid, a);
        size_t k = size_t(got) / 8;
        for (size_t i = 0; i < k; ++i)
            if (swap_entry_is_data(words[i]))
                out.add(a + i * kPage, a + (i + 1) * kPage);
        a += k * kPage;
    }
    return out;
}

// Splits runs of pages that hold data by the dirty plan: dirty pages and pages the parent does
// not have are read, the rest (`keep`: the VMA's pages in the parent and not dirty, computed once
// per VMA) is recorded as in the parent. Runs come in address order, so one cursor walks `keep`
// once per VMA (a run-by-run intersection was quadratic: 250 ms for 8730 dirty pages of 1 GiB).
class PlanSplitter {
public:
    PlanSplitter(const DirtyPlan* plan, uint64_t vma_start, uint64_t vma_end) {
        if (plan) {
            RangeSet vr{{vma_start, vma_end}};
            keep_ = vr.intersect(plan->parent_pages).subtract(plan->dirty);
        }
    }
    void add(std::vector<Run>& runs, const Run& r) {
        const auto& k = keep_.ranges();
        while (cursor_ < k.size() && k[cursor_].end <= r.start)
            ++cursor_;
        uint64_t cur = r.start;
        for (size_t i = cursor_; i < k.size() && k[i].start < r.end; ++i) {
            uint64_t ks = std::max(k[i].start, r.start), ke = std::min(k[i].end, r.end);
            if (ks > cur)
                runs.push_back({cur, ks, r.force, r.zero_holes});
            runs.push_back({ks, ke, r.force, r.zero_holes, true});
            cur = ke;
        }
        if (cur < r.end)
            runs.push_back({cur, r.end, r.force, r.zero_holes});
    }

private:
    RangeSet keep_;
    size_t cursor_ = 0;
};

// Where find_runs looks for pages in one VMA. Normally the whole VMA. With an exact plan
// (DirtyPlan::exact) and anonymous private memory, only where something can have changed:
// the dirty pages and the pages the parent lacks; the rest is recorded as in the parent
// unread and unscanned (a 1 GiB process with a few dirty pages: no walk over its 1 GiB).
// Nearby ranges share one walk (kScanGapPages apart at most); what a walk finds outside
// `look` is clipped off.
constexpr uint64_t kScanGapPages = 32;

struct VmaScanPlan {
    RangeSet look;              // empty with `whole`
    RangeSet parent_only;       // recorded as in the parent without a look
    std::vector<PageRange> windows;  // the walks
    bool whole = true;
};

VmaScanPlan plan_vma_scan(const DumpVma& v, const DirtyPlan* plan) {
    VmaScanPlan sp;
    const uint64_t s = v.vma.start(), e = v.vma.end();
    if (!plan || !plan->exact || v.pages != PagePolicy::Private || !v.zero_pages_are_holes) {
        sp.windows.push_back({s, e});
        return sp;
    }
    sp.whole = false;
    RangeSet vr{{s, e}};
    sp.parent_only = vr.intersect(plan->parent_pages).subtract(plan->dirty);
    sp.look = vr.subtract(sp.parent_only);
    for (const PageRange& r : sp.look.ranges()) {
        if (!sp.windows.empty() && r.start - sp.windows.back().end <= kScanGapPages * kPage)
            sp.windows.back().end = r.end;
        else
            sp.windows.push_back(r);
    }
    return sp;
}

// A private mapping of a deleted file or a memfd comes back as anonymous memory (the file is
// not there to map), so the image must hold every page the mapping shows. Pages the process
// never touched are not in its page tables, yet they show the file's contents: the file's data
// extents (SEEK_DATA/SEEK_HOLE through /proc/PID/map_files, which leaves the process alone)
// name them. Holes read as zero and stay holes; nothing past the end of the file is mapped.
Expected<RangeSet> file_data_pages(pid_t pid, const DumpVma& v) {
    const uint64_t start = v.vma.start(), end = v.vma.end();
    const std::string path = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, start, end);
    const std::string what = fmt::format("pid {}: private mapping {:#x}-{:#x} of {}", pid, start, end,
                                         v.maps.path.empty() ? "a memfd" : v.maps.path);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("{}: cannot open {} to find the pages the process has not touched", what, path);
    const off_t base = off_t(v.vma.pgoff()), stop = base + off_t(end - start);
    RangeSet out;
    for (off_t off = base; off < stop;) {
        off_t data = ::lseek(fd.get(), off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;  // no data from here to the end of the file
        if (data < 0)
            return fail_errno("{}: SEEK_DATA at {}", what, off);
        if (data >= stop)
            break;
        off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
        if (hole < 0)
            return fail_errno("{}: SEEK_HOLE at {}", what, data);
        hole = std::min(hole, stop);
        const uint64_t s = start + uint64_t(data - base) / kPage * kPage;
        const uint64_t e = std::min(end, start + (uint64_t(hole - base) + kPage - 1) / kPage * kPage);
        out.add(s, e);
        off = hole;
    }
    return out;
}

Expected<std::vector<Run>> find_runs(DumpContext& ctx, pid_t pid, const std::vector<DumpVma>& vmas,
                                     images::MmInfo& mm, const DirtyPlan* plan) {
    bool use_scan = ctx.features.has("pagemap_scan");
    PagemapScanner scanner = TRY(PagemapScanner::open(pid, use_scan));
    UniqueFd raw_pagemap;
    std::vector<Run> runs;
    uint64_t walked = 0;
    for (const DumpVma& v : vmas) {
        if (v.pages == PagePolicy::None)
            continue;
        // KERNEL-NOTES section 3: present or swapped, never the zero page, and for private
        // mappings not page cache (what is left is anon or COWed). Shared memory pages are page
        // cache of their shmem object, so FILE stays allowed there.
        uint64_t exclude = kPageIsPfnZero;
        if (v.pages == PagePolicy::Private)
            exclude |= kPageIsFile;
        const VmaScanPlan sp = plan_vma_scan(v, plan);
        // With a partial look the parent's pages are already set aside (sp.parent_only): what
        // is looked at is read.
        PlanSplitter split(sp.whole ? plan : nullptr, v.vma.start(), v.vma.end());
        const size_t first_run = runs.size();
        size_t look_cursor = 0;
        // Calls fn for the parts of [s, e) inside `look` (everything with a whole-VMA scan);
        // regions come in address order, so one cursor walks `look` once.
        auto clipped = [&](uint64_t rs, uint64_t re, const auto& fn) {
            if (sp.whole) {
                fn(rs, re);
                return;
            }
            const auto& lk = sp.look.ranges();
            while (look_cursor < lk.size() && lk[look_cursor].end <= rs)
                ++look_cursor;
            for (size_t i = look_cursor; i < lk.size() && lk[i].start < re; ++i)
                fn(std::max(rs, lk[i].start), std::min(re, lk[i].end));
        };
        for (const PageRange& w : sp.windows) {
            walked += w.pages();
            auto regions = TRY_CTX(scanner.scan(w.start, w.end, kPageIsPresent | kPageIsSwapped | kPageIsGuard, exclude,
                                                kPageIsGuard | kPageIsPresent | kPageIsSwapped),
                                   "finding the pages of pid {}", pid);
            for (const auto& r : regions) {
                if (r.categories & kPageIsGuard) {
                    // MADV_GUARD_INSTALL ranges do not show in maps; the restorer re-installs them.
                    // (Installing one over tracked memory reports it written: never in parent_only.)
                    clipped(r.start, r.end, [&](uint64_t gs, uint64_t ge) {
                        auto* g = mm.add_guards();
                        g->set_start(gs);
                        g->set_end(ge);
                    });
                    continue;
                }
                Run run{r.start, r.end, !v.maps.read, v.zero_pages_are_holes};
                if (!(r.categories & kPageIsPresent)) {
                    // "Swapped" may be uffd-wp markers (a tracked process): keep real swap only.
                    if (!raw_pagemap) {
                        raw_pagemap.reset(::open(fmt::format("/proc/{}/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC));
                        if (!raw_pagemap)
                            return fail_errno("pid {}: cannot open its pagemap", pid);
                    }
                    RangeSet real = TRY(real_swap_pages(raw_pagemap.get(), pid, r.start, r.end));
                    for (const PageRange& p : real.ranges())
                        clipped(p.start, p.end, [&](uint64_t cs, uint64_t ce) {
                            split.add(runs, {cs, ce, run.force, run.zero_holes});
                        });
                    continue;
                }
                clipped(r.start, r.end, [&](uint64_t cs, uint64_t ce) {
                    split.add(runs, {cs, ce, run.force, run.zero_holes});
                });
            }
        }
        if (v.pages == PagePolicy::AllPrivate) {
            RangeSet found;
            for (size_t i = first_run; i < runs.size(); ++i)
                found.add(runs[i].start, runs[i].end);
            for (const auto& g : mm.guards())
                found.add(g.start(), g.end());
            RangeSet untouched = TRY(file_data_pages(pid, v)).subtract(found);
            if (!sp.whole)
                untouched = untouched.intersect(sp.look);
            // Read through /proc/PID/mem: it brings the page cache page in without a write.
            PlanSplitter extra(sp.whole ? plan : nullptr, v.vma.start(), v.vma.end());
            for (const PageRange& p : untouched.ranges())
                extra.add(runs, {p.start, p.end, true, v.zero_pages_are_holes});
            if (!untouched.empty())
                std::sort(runs.begin() + std::ptrdiff_t(first_run), runs.end(),
                          [](const Run& a, const Run& b) { return a.start < b.start; });
        }
        if (!sp.parent_only.empty()) {
            for (const PageRange& p : sp.parent_only.ranges())
                runs.push_back({p.start, p.end, !v.maps.read, v.zero_pages_are_holes, true});
            std::sort(runs.begin() + std::ptrdiff_t(first_run), runs.end(),
                      [](const Run& a, const Run& b) { return a.start < b.start; });
        }
    }
    ctx.log.debug("dump", "pid {}: {} page runs ({}, {} pages walked)", pid, runs.size(),
                  scanner.using_ioctl() ? "PAGEMAP_SCAN" : "/proc/PID/pagemap", walked);
    return runs;
}

}  // namespace

Status dump_pages(DumpContext& ctx, Task& task, const std::vector<DumpVma>& vmas, images::MmInfo& mm,
                  const PageHashes* parent, PageHashes* hashes, const DirtyPlan* plan) {
    return dump_pages(ctx, task.pid(), vmas, mm, parent, hashes, plan);
}

Status dump_pages(DumpContext& ctx, pid_t pid, const std::vector<DumpVma>& vmas, images::MmInfo& mm,
                  const PageHashes* parent, PageHashes* hashes, const DirtyPlan* plan, RangeSet* unreadable) {
    auto t0 = std::chrono::steady_clock::now();
    ProcMem mem(pid);
    const bool tolerant = unreadable != nullptr;
    std::vector<Run> runs = TRY(find_runs(ctx, pid, vmas, mm, plan));
    uint64_t scanned = 0;
    for (const Run& r : runs)
        scanned += (r.end - r.start) / kPage;
    ctx.stats.set_pages_scanned(ctx.stats.pages_scanned() + scanned);

    PageWriterOptions wo;
    wo.codec = ctx.opts.compress ? images::CODEC_ZSTD : images::CODEC_RAW;
    // The image directory unless the dump sends its pages elsewhere (page server, migration).
    std::unique_ptr<PageSink> sink = TRY_CTX(ctx.page_sinks ? ctx.page_sinks(pid, wo) : ImageDirPageSink::create(ctx.dir, pid, wo),
                                             "pages of pid {}", pid);
    PageSink& pw = *sink;
    uint64_t write_us = 0;
    Classifier cls;
    cls.parent = parent;
    cls.hashes = hashes;
    {
        WriterPipeline pipe(pw, cls);
        Batch* cur = pipe.take_free();
        size_t used = 0;
        bool submitted_once = false;
        auto flush = [&]() -> Status {
            TRY_VOID_CTX(read_pending(mem, cur->buf, cur->pend, tolerant), "reading the memory of pid {}", pid);
            pipe.submit(cur);
            used = 0;
            if (!submitted_once) {
                submitted_once = true;
                // The fault-injection point sits here so that a failure finds the writer busy.
                TRY_VOID(ctx.checkpoint("pages"));
            } else if (int sig = InterruptGuard::pending()) {
                return failf(EINTR, "dump interrupted by signal {} while reading memory", sig);
            }
            cur = pipe.take_free();
            if (pipe.failed())
                return pipe.stop();
            return {};
        };
        for (const Run& r : runs) {
            if (r.parent_only) {
                // Nothing to read: no buffer space, only a place in the address order.
                cur->pend.push_back({r.start, (r.end - r.start) / kPage, used, r.force, r.zero_holes, true});
                if (cur->pend.size() == kMaxIov)
                    TRY_VOID(flush());
                continue;
            }
            for (uint64_t a = r.start; a < r.end;) {
                size_t take = std::min<uint64_t>(kBatchPages - used, (r.end - a) / kPage);
                cur->pend.push_back({a, take, used, r.force, r.zero_holes});
                used += take;
                a += take * kPage;
                if (used == kBatchPages || cur->pend.size() == kMaxIov)
                    TRY_VOID(flush());
            }
        }
        if (!cur->pend.empty())
            TRY_VOID(flush());
        else if (!submitted_once)
            TRY_VOID(ctx.checkpoint("pages"));
        if (cur)
            cur->pend.clear();
        TRY_VOID(pipe.stop());
        write_us = pipe.write_us();
    }
    auto tf = std::chrono::steady_clock::now();
    TRY_VOID_CTX(pw.finish(), "pages of pid {}", pid);
    write_us += micros_since(tf);

    if (tolerant)
        for (const PageRange& r : cls.unreadable)
            unreadable->add(r);
    const PageWriterStats ps = pw.stats();
    ctx.stats.set_pages_skipped_zero(ctx.stats.pages_skipped_zero() + cls.zero_pages);
    ctx.stats.set_pages_skipped_parent(ctx.stats.pages_skipped_parent() + cls.parent_pages);
    ctx.stats.set_pages_written(ctx.stats.pages_written() + ps.pages_present);
    ctx.stats.set_bytes_written(ctx.stats.bytes_written() + ps.bytes_stored);
    ctx.stats.set_bytes_before_compression(ctx.stats.bytes_before_compression() + ps.bytes_in);
    ctx.stats.set_memdump_time_us(ctx.stats.memdump_time_us() + micros_since(t0));
    ctx.stats.set_memwrite_time_us(ctx.stats.memwrite_time_us() + write_us);
    ctx.log.info("dump", "pid {}: {} pages scanned, {} written, {} zero skipped, {} as in the parent, {} bytes stored ({})",
                 pid, scanned, ps.pages_present, ctx.stats.pages_skipped_zero(), ps.pages_parent, ps.bytes_stored,
                 ctx.opts.compress ? "zstd" : "raw");
    return {};
}

}  // namespace criu
