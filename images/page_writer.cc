#include "images/page_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <zstd.h>

#include "images/zstd_stored.h"

namespace criu {
namespace {

// Staging buffer for the pages file: large writes, page aligned for O_DIRECT.
constexpr size_t kStageSize = 1u << 20;
// Page-aligned caller data at least this large is written from the caller's memory.
constexpr size_t kDirectMin = 64u << 10;
// Largest single entry; a longer run is split (nr_pages is a u32 on disk).
constexpr uint64_t kMaxEntryPages = 1u << 30;

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

struct CctxDeleter {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
using Cctx = std::unique_ptr<ZSTD_CCtx, CctxDeleter>;

// A reusable byte buffer that, unlike std::vector::resize, does not zero what it grows into:
// zeroing a 1 MiB frame buffer before each frame (twice) cost more than compressing text.
struct ByteBuf {
    std::unique_ptr<char[]> p;
    size_t cap = 0;
    size_t len = 0;
    // Room for n bytes; the old content is not kept.
    char* room(size_t n) {
        if (n > cap) {
            p.reset(new char[n]);  // default-initialized: not zeroed
            cap = n;
        }
        return p.get();
    }
    const char* data() const { return p.get(); }
    size_t size() const { return len; }
};

// One frame to compress; filled by a worker, consumed in order by the writer.
struct Job {
    uint64_t vaddr = 0;
    uint32_t nr_pages = 0;
    uint32_t flags = 0;
    ByteBuf in;
    ByteBuf out;
    std::string error;
    bool plain = false;  // a zero/parent entry queued behind frames: nothing to compress
    bool done = false;
};

// Whether `len` bytes look incompressible: a sample of four 4 KiB pieces spread over the
// frame compresses by less than 3%. Random or already compressed pages then skip zstd, which
// would spend about as long as on compressible data only to store them as they are.
constexpr size_t kSamplePiece = 4096;
constexpr int kSamplePieces = 4;

bool looks_incompressible(ZSTD_CCtx* cctx, int level, const char* src, size_t len, ByteBuf& scratch) {
    if (len < 8 * kSamplePiece)
        return false;
    char sample[kSamplePieces * kSamplePiece];
    size_t stride = (len - kSamplePiece) / (kSamplePieces - 1) / kPageSize * kPageSize;
    for (int i = 0; i < kSamplePieces; ++i)
        std::memcpy(sample + i * kSamplePiece, src + i * stride, kSamplePiece);
    size_t cap = ZSTD_compressBound(sizeof(sample));
    size_t n = ZSTD_compressCCtx(cctx, scratch.room(cap), cap, sample, sizeof(sample), level);
    return !ZSTD_isError(n) && n * 100 >= sizeof(sample) * 97;
}

size_t store_frame(const void* src, size_t len, ByteBuf& out) {
    out.len = zstd_stored_frame(src, len, out.room(len + zstd_stored_overhead(len)));
    return out.len;
}

Expected<size_t> compress_frame(ZSTD_CCtx* cctx, int level, const void* src, size_t len, ByteBuf& out) {
    if (looks_incompressible(cctx, level, static_cast<const char*>(src), len, out))
        return store_frame(src, len, out);
    // Every frame carries zstd's content checksum (4 bytes): without it a damaged frame can
    // decode to other bytes of the right size, which a restore would map without noticing.
    size_t cap = ZSTD_compressBound(len) + 4;
    char* dst = out.room(cap);
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(cctx, dst, cap, src, len);
    if (ZSTD_isError(n))
        return failf(EIO, "zstd compression failed: {}", ZSTD_getErrorName(n));
    // zstd stores what it cannot shrink too, with a little more framing than a stored frame.
    if (n > len + zstd_stored_overhead(len))
        return store_frame(src, len, out);
    out.len = n;
    return n;
}

}  // namespace

struct PageWriter::Impl {
    PageWriterOptions opts;
    std::string pages_path, pagemap_name;
    UniqueFd dir_fd, fd;
    std::string dir_path;
    int64_t id = 0;
    bool direct = false;
    std::unique_ptr<char, FreeDeleter> stage;
    size_t fill = 0;           // bytes in `stage`
    uint64_t written = 0;      // bytes already in the file
    uint64_t prev_end = 0;     // end of the last range added: ranges must increase
    std::vector<PageEntry> entries;
    PageWriterStats stats;
    bool finished = false;
    bool failed = false;       // a write failed: the file is unusable, refuse more

    Cctx cctx;                 // inline compression
    ByteBuf zbuf;

    // Worker pool (zstd with threads > 0).
    std::mutex mu;
    std::condition_variable work_cv, done_cv;
    std::deque<std::shared_ptr<Job>> queue;    // not yet picked by a worker
    std::deque<std::shared_ptr<Job>> pending;  // in submission order, awaiting writing
    std::vector<std::thread> workers;
    bool stop = false;
    // Jobs written out, kept with their buffers: a fresh 1 MiB buffer per frame costs a page
    // fault per page (fresh memory, MACHINE-LIMITS.md), more than compressing it.
    std::vector<std::shared_ptr<Job>> spare;

    std::shared_ptr<Job> take_job() {
        if (spare.empty())
            return std::make_shared<Job>();
        auto j = std::move(spare.back());
        spare.pop_back();
        j->error.clear();
        j->plain = false;
        j->done = false;
        return j;
    }

    ~Impl() { stop_workers(); }

    uint64_t offset() const { return written + fill; }

    void stop_workers() {
        {
            std::lock_guard lk(mu);
            stop = true;
        }
        work_cv.notify_all();
        for (auto& t : workers)
            t.join();
        workers.clear();
    }

    void worker_loop() {
        Cctx c(ZSTD_createCCtx());
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lk(mu);
                work_cv.wait(lk, [&] { return stop || !queue.empty(); });
                if (stop)
                    return;
                job = std::move(queue.front());
                queue.pop_front();
            }
            std::string err;
            if (!c) {
                err = "cannot create a zstd context";
            } else {
                auto r = compress_frame(c.get(), opts.zstd_level, job->in.data(), job->in.size(), job->out);
                if (!r)
                    err = r.error().message();
            }
            {
                std::lock_guard lk(mu);
                job->error = std::move(err);
                job->done = true;
            }
            done_cv.notify_all();
        }
    }

    // write_full for the pages file: on the first EINVAL from O_DIRECT (a filesystem
    // with a larger logical block, or one that accepts the flag at open but not at
    // write), drop O_DIRECT and carry on buffered.
    Status write_out(const char* p, size_t n) {
        while (n > 0) {
            ssize_t w = ::write(fd.get(), p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EINVAL && direct) {
                    int fl = ::fcntl(fd.get(), F_GETFL);
                    if (fl >= 0 && ::fcntl(fd.get(), F_SETFL, fl & ~O_DIRECT) == 0) {
                        direct = false;
                        continue;
                    }
                }
                failed = true;
                return fail_errno("{}: write at offset {} failed", pages_path, written);
            }
            if (w == 0) {
                failed = true;
                return failf(ENOSPC, "{}: write made no progress", pages_path);
            }
            p += w;
            n -= static_cast<size_t>(w);
            written += static_cast<uint64_t>(w);
        }
        return {};
    }

    Status flush_stage() {
        if (fill == 0)
            return {};
        // With O_DIRECT only whole blocks go out; the tail waits for more data or finish().
        size_t n = direct ? fill / kPageSize * kPageSize : fill;
        TRY_VOID(write_out(stage.get(), n));
        std::memmove(stage.get(), stage.get() + n, fill - n);
        fill -= n;
        return {};
    }

    Status append(const char* p, size_t n) {
        if (opts.layout_only) {
            written += n;  // the header went out at create(); finish() sizes the file
            return {};
        }
        // Big, aligned runs of raw pages skip the copy when the file offset is aligned too.
        if (n >= kDirectMin && n % kPageSize == 0 && reinterpret_cast<uintptr_t>(p) % kPageSize == 0 &&
            fill % kPageSize == 0) {
            TRY_VOID(flush_stage());
            if (fill == 0)
                return write_out(p, n);
        }
        while (n > 0) {
            size_t k = std::min(n, kStageSize - fill);
            std::memcpy(stage.get() + fill, p, k);
            fill += k;
            p += k;
            n -= k;
            if (fill == kStageSize)
                TRY_VOID(flush_stage());
        }
        return {};
    }

    void add_entry(const PageEntry& e) {
        if (!entries.empty()) {
            PageEntry& last = entries.back();
            bool contiguous_data = !e.present() || (opts.codec == images::CODEC_RAW &&
                                                    last.offset + last.stored_size == e.offset);
            if (last.flags == e.flags && last.end() == e.vaddr && contiguous_data &&
                uint64_t(last.nr_pages) + e.nr_pages <= kMaxEntryPages) {
                last.nr_pages += e.nr_pages;
                last.stored_size += e.stored_size;
                return;
            }
        }
        entries.push_back(e);
    }

    Status check_range(uint64_t vaddr, size_t nr) {
        if (finished)
            return failf(EINVAL, "{}: add after finish", pages_path);
        if (failed)
            return failf(EIO, "{}: an earlier write failed", pages_path);
        if (vaddr % kPageSize)
            return failf(EINVAL, "{}: address {:#x} is not page aligned", pages_path, vaddr);
        if (vaddr >= kMaxUserAddress || nr > (kMaxUserAddress - vaddr) / kPageSize)
            return failf(EINVAL, "{}: {} pages at {:#x} reach past the end of user space", pages_path, nr, vaddr);
        if (vaddr < prev_end)
            return failf(EINVAL, "{}: range at {:#x} is below the end of the previous one ({:#x})", pages_path,
                         vaddr, prev_end);
        return {};
    }

    // Writes finished frames in submission order; with `wait_until` set, blocks until at
    // most that many jobs remain in flight.
    Status drain(size_t wait_until) {
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock lk(mu);
                if (pending.empty())
                    return {};
                if (!pending.front()->done) {
                    if (pending.size() <= wait_until)
                        return {};
                    done_cv.wait(lk, [&] { return pending.front()->done; });
                }
                job = std::move(pending.front());
                pending.pop_front();
            }
            if (!job->error.empty()) {
                failed = true;
                return failf(EIO, "{}: frame at {:#x}: {}", pages_path, job->vaddr, job->error);
            }
            if (job->plain)
                add_entry(PageEntry{job->vaddr, job->nr_pages, job->flags, 0, 0});
            else
                TRY_VOID(emit(job->vaddr, job->nr_pages, job->flags, job->out.data(), job->out.size()));
            if (!job->plain)
                spare.push_back(std::move(job));
        }
    }

    Status emit(uint64_t vaddr, uint32_t nr, uint32_t flags, const char* data, size_t len) {
        uint64_t at = offset();
        TRY_VOID(append(data, len));
        add_entry(PageEntry{vaddr, nr, flags, at, len});
        stats.bytes_stored += len;
        return {};
    }

    // Queues a non-data entry behind the frames still being compressed.
    Status add_plain(uint64_t vaddr, uint32_t nr, uint32_t flags) {
        bool behind;
        {
            std::lock_guard lk(mu);
            behind = !pending.empty();
            if (behind) {
                auto j = std::make_shared<Job>();
                j->vaddr = vaddr;
                j->nr_pages = nr;
                j->flags = flags;
                j->plain = true;
                j->done = true;
                pending.push_back(std::move(j));
            }
        }
        if (!behind)
            add_entry(PageEntry{vaddr, nr, flags, 0, 0});
        return {};
    }
};

PageWriter::PageWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PageWriter::PageWriter(PageWriter&&) noexcept = default;
PageWriter& PageWriter::operator=(PageWriter&&) noexcept = default;
PageWriter::~PageWriter() = default;

Expected<PageWriter> PageWriter::create(const ImageDir& dir, int64_t id, PageWriterOptions opts) {
    if (opts.codec != images::CODEC_RAW && opts.codec != images::CODEC_ZSTD)
        return failf(EINVAL, "unknown page codec {}", int(opts.codec));
    if (opts.frame_pages == 0 || opts.frame_pages > kMaxFramePages)
        return failf(EINVAL, "frame size of {} pages is outside 1..{}", opts.frame_pages, kMaxFramePages);
    auto im = std::make_unique<Impl>();
    im->opts = opts;
    im->id = id;
    im->dir_path = dir.path();
    im->pages_path = dir.file_path(pages_file_name(id));
    im->pagemap_name = image_file_name(ImageType::Pagemap, id);
    int dfd = ::fcntl(dir.fd(), F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return fail_errno("{}: dup of the directory fd failed", dir.path());
    im->dir_fd.reset(dfd);

    std::string name = pages_file_name(id);
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
    const bool try_direct = opts.direct_io && !opts.layout_only;  // nothing to write past the header
    int fd = try_direct ? ::openat(dfd, name.c_str(), flags | O_DIRECT, 0600) : -1;
    im->direct = fd >= 0;
    if (fd < 0 && try_direct && errno != EINVAL)
        return fail_errno("{}: cannot create", im->pages_path);
    if (fd < 0)  // tmpfs and some FUSE filesystems refuse O_DIRECT at open with EINVAL
        fd = ::openat(dfd, name.c_str(), flags, 0600);
    if (fd < 0)
        return fail_errno("{}: cannot create", im->pages_path);
    im->fd.reset(fd);

    void* mem = nullptr;
    if (::posix_memalign(&mem, kPageSize, kStageSize) != 0)
        return failf(ENOMEM, "{}: cannot allocate the write buffer", im->pages_path);
    im->stage.reset(static_cast<char*>(mem));
    std::string header = encode_pages_header(opts.codec);
    std::memcpy(im->stage.get(), header.data(), header.size());
    im->fill = header.size();
    if (opts.layout_only)
        TRY_VOID(im->flush_stage());

    if (opts.codec == images::CODEC_ZSTD) {
        im->cctx.reset(ZSTD_createCCtx());
        if (!im->cctx)
            return failf(ENOMEM, "{}: cannot create a zstd context", im->pages_path);
        Impl* raw = im.get();
        for (unsigned i = 0; i < opts.threads; i++)
            im->workers.emplace_back([raw] { raw->worker_loop(); });
    }
    return PageWriter(std::move(im));
}

Status PageWriter::add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy) {
    Impl& im = *impl_;
    TRY_VOID(im.check_range(vaddr, nr_pages));
    if (nr_pages == 0)
        return {};
    uint32_t flags = images::PE_PRESENT | (lazy ? images::PE_LAZY : 0);
    const char* p = static_cast<const char*>(data);
    im.prev_end = vaddr + nr_pages * kPageSize;
    im.stats.pages_present += nr_pages;
    im.stats.bytes_in += nr_pages * kPageSize;

    if (im.opts.codec == images::CODEC_RAW) {
        while (nr_pages > 0) {
            auto n = static_cast<uint32_t>(std::min<uint64_t>(nr_pages, kMaxEntryPages));
            TRY_VOID(im.emit(vaddr, n, flags, p, size_t(n) * kPageSize));
            vaddr += uint64_t(n) * kPageSize;
            p += size_t(n) * kPageSize;
            nr_pages -= n;
        }
        return {};
    }
    while (nr_pages > 0) {
        uint32_t n = static_cast<uint32_t>(std::min<size_t>(nr_pages, im.opts.frame_pages));
        size_t len = size_t(n) * kPageSize;
        if (im.workers.empty()) {
            TRY_VOID(compress_frame(im.cctx.get(), im.opts.zstd_level, p, len, im.zbuf));
            TRY_VOID(im.emit(vaddr, n, flags, im.zbuf.data(), im.zbuf.size()));
        } else {
            auto job = im.take_job();
            job->vaddr = vaddr;
            job->nr_pages = n;
            job->flags = flags;
            std::memcpy(job->in.room(len), p, len);
            job->in.len = len;
            {
                std::lock_guard lk(im.mu);
                im.pending.push_back(job);
                im.queue.push_back(std::move(job));
            }
            im.work_cv.notify_one();
            // Bounded memory: at most a few frames per worker wait in flight.
            TRY_VOID(im.drain(2 * im.workers.size() + 2));
        }
        vaddr += len;
        p += len;
        nr_pages -= n;
    }
    return {};
}

Status PageWriter::add_zero(uint64_t vaddr, size_t nr_pages) {
    Impl& im = *impl_;
    TRY_VOID(im.check_range(vaddr, nr_pages));
    im.prev_end = vaddr + nr_pages * kPageSize;
    im.stats.pages_zero += nr_pages;
    for (; nr_pages > 0;) {
        auto n = static_cast<uint32_t>(std::min<uint64_t>(nr_pages, kMaxEntryPages));
        TRY_VOID(im.add_plain(vaddr, n, images::PE_ZERO));
        vaddr += uint64_t(n) * kPageSize;
        nr_pages -= n;
    }
    return {};
}

Status PageWriter::add_parent(uint64_t vaddr, size_t nr_pages) {
    Impl& im = *impl_;
    TRY_VOID(im.check_range(vaddr, nr_pages));
    im.prev_end = vaddr + nr_pages * kPageSize;
    im.stats.pages_parent += nr_pages;
    for (; nr_pages > 0;) {
        auto n = static_cast<uint32_t>(std::min<uint64_t>(nr_pages, kMaxEntryPages));
        TRY_VOID(im.add_plain(vaddr, n, images::PE_PARENT));
        vaddr += uint64_t(n) * kPageSize;
        nr_pages -= n;
    }
    return {};
}

Status PageWriter::finish(bool sync) {
    Impl& im = *impl_;
    if (im.finished)
        return failf(EINVAL, "{}: finish called twice", im.pages_path);
    if (im.failed)
        return failf(EIO, "{}: an earlier write failed", im.pages_path);
    TRY_VOID(im.drain(0));
    im.finished = true;
    im.stop_workers();

    uint64_t size = im.offset();
    TRY_VOID(im.flush_stage());
    if (im.fill > 0) {
        // O_DIRECT tail: pad to a whole block, then cut the file back to its real size.
        size_t padded = (im.fill + kPageSize - 1) / kPageSize * kPageSize;
        std::memset(im.stage.get() + im.fill, 0, padded - im.fill);
        TRY_VOID(im.write_out(im.stage.get(), padded));
        im.fill = 0;
        if (::ftruncate(im.fd.get(), static_cast<off_t>(size)) < 0)
            return fail_errno("{}: ftruncate to {} failed", im.pages_path, size);
    }
    if (im.opts.layout_only && ::ftruncate(im.fd.get(), static_cast<off_t>(size)) < 0)
        return fail_errno("{}: ftruncate to {} failed", im.pages_path, size);
    if (sync && ::fsync(im.fd.get()) < 0)
        return fail_errno("{}: fsync failed", im.pages_path);
    im.stats.direct_io = im.direct;
    if (::close(im.fd.release()) < 0)
        return fail_errno("{}: close failed", im.pages_path);

    // The pagemap goes last: its presence says the pages file is complete.
    std::string map_path = im.dir_path + "/" + im.pagemap_name;
    auto w = TRY(ImageWriter::create_at(im.dir_fd.get(), im.pagemap_name, ImageType::Pagemap, map_path));
    images::PagemapHead head;
    head.set_page_size(kPageSize);
    head.set_codec(im.opts.codec);
    head.set_pages_file(pages_file_name(im.id));
    head.set_pages_file_size(size);
    head.set_nr_entries(im.entries.size());
    TRY_VOID(w.write(head));
    images::PagemapEntry pe;
    for (const auto& e : im.entries) {
        pe.set_vaddr(e.vaddr);
        pe.set_nr_pages(e.nr_pages);
        pe.set_flags(e.flags);
        pe.set_offset(e.offset);
        pe.set_stored_size(e.stored_size);
        TRY_VOID(w.write(pe));
    }
    TRY_VOID(w.close(sync));
    im.stats.entries = im.entries.size();
    im.stats.pages_file_size = size;
    return {};
}

const PageWriterStats& PageWriter::stats() const { return impl_->stats; }

}  // namespace criu
