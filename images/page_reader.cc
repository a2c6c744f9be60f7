#include "images/page_reader.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <zstd.h>

namespace criu {

struct PageReader::Zstd {
    struct DctxDeleter {
        void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
    };
    std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx{ZSTD_createDCtx()};
    std::vector<char> comp;     // one stored frame
    std::vector<char> plain;    // one decoded frame
    std::optional<size_t> cached;  // index of the entry `plain` holds
};

PageReader::PageReader(PageReader&&) noexcept = default;
PageReader& PageReader::operator=(PageReader&&) noexcept = default;
PageReader::~PageReader() = default;

Expected<PageReader> PageReader::open_one(const ImageDir& dir, int64_t id) {
    PageReader pr;
    pr.dir_path_ = dir.path();
    auto r = TRY(dir.open_reader(ImageType::Pagemap, id));
    pr.pagemap_path_ = r.path();
    pr.head_ = TRY(r.read_one<images::PagemapHead>());
    const auto& h = pr.head_;
    if (h.page_size() != kPageSize)
        return failf(EINVAL, "{}: page size {} is not supported (this criu uses {})", pr.pagemap_path_, h.page_size(),
                     kPageSize);
    if (h.codec() != images::CODEC_RAW && h.codec() != images::CODEC_ZSTD)
        return failf(EINVAL, "{}: unknown page codec {}", pr.pagemap_path_, int(h.codec()));
    // Only the file this id's pages belong in: a hostile pagemap must not point the
    // reader at another file ("../../etc/shadow").
    if (h.pages_file() != pages_file_name(id))
        return failf(EINVAL, "{}: pages file \"{}\" is not {}", pr.pagemap_path_, h.pages_file(), pages_file_name(id));

    pr.pages_path_ = dir.file_path(h.pages_file());
    int fd = ::openat(dir.fd(), h.pages_file().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return fail_errno("{}: cannot open", pr.pages_path_);
    pr.pages_fd_.reset(fd);
    struct stat st;
    if (::fstat(fd, &st) < 0)
        return fail_errno("{}: fstat failed", pr.pages_path_);
    if (!S_ISREG(st.st_mode))
        return failf(EINVAL, "{}: not a regular file", pr.pages_path_);
    pr.pages_size_ = static_cast<uint64_t>(st.st_size);
    if (pr.pages_size_ != h.pages_file_size())
        return failf(EINVAL, "{}: file is {} bytes, {} says {}", pr.pages_path_, pr.pages_size_, pr.pagemap_path_,
                     h.pages_file_size());
    char block[kPagesHeaderSize];
    size_t got = TRY(pread_full(fd, block, sizeof block, 0, pr.pages_path_));
    auto ph = TRY(decode_pages_header(block, got, pr.pages_path_));
    if (ph.codec != h.codec())
        return failf(EINVAL, "{}: codec {} differs from {} in {}", pr.pages_path_, codec_name(ph.codec),
                     codec_name(h.codec()), pr.pagemap_path_);

    images::PagemapEntry m;
    uint64_t prev_end = 0;
    for (;;) {
        if (!TRY(r.read(m)))
            break;
        std::string what = fmt::format("{}: entry {}", pr.pagemap_path_, pr.entries_.size() + 1);
        if (pr.entries_.size() >= h.nr_entries())
            return failf(EINVAL, "{}: more entries than the {} the head announces", what, h.nr_entries());
        auto e = TRY(validate_page_entry(m, h.codec(), prev_end, pr.pages_size_, what));
        prev_end = e.end();
        pr.has_parent_entries_ |= e.parent();
        pr.entries_.push_back(e);
    }
    if (pr.entries_.size() != h.nr_entries())
        return failf(EINVAL, "{}: truncated: {} entries, the head announces {}", pr.pagemap_path_, pr.entries_.size(),
                     h.nr_entries());
    if (h.codec() == images::CODEC_ZSTD) {
        pr.zstd_ = std::make_unique<Zstd>();
        if (!pr.zstd_->dctx)
            return failf(ENOMEM, "{}: cannot create a zstd context", pr.pages_path_);
    }
    return pr;
}

Expected<PageReader> PageReader::open(const ImageDir& dir, int64_t id, bool with_parents) {
    auto top = TRY(open_one(dir, id));
    if (!with_parents || !top.has_parent_entries_)
        return top;

    auto chain = TRY(dir.parent_chain());
    std::vector<PageReader> levels;
    for (const auto& pdir : chain) {
        if (!TRY(pdir.has(ImageType::Pagemap, id)))
            break;
        levels.push_back(TRY(open_one(pdir, id)));
        if (!levels.back().has_parent_entries_)
            break;  // nothing deeper is ever consulted
    }
    // Link from the deepest up, checking at each level that every parent range is
    // covered by the level below. A level's own parent ranges were checked already, so
    // covered-by-any-entry is enough.
    std::unique_ptr<PageReader> below;
    for (size_t i = levels.size() + 1; i-- > 0;) {
        PageReader& cur = i == 0 ? top : levels[i - 1];
        for (size_t k = 0; k < cur.entries_.size(); k++) {
            const PageEntry& e = cur.entries_[k];
            if (!e.parent())
                continue;
            if (!below)
                return failf(EINVAL, "{}: entry {} (vaddr {:#x}) refers to a parent image, but {} has none{}",
                             cur.pagemap_path_, k + 1, e.vaddr, cur.dir_path_,
                             i < chain.size() ? fmt::format(" with pagemap-{}.img", id) : "");
            if (auto gap = below->first_gap(e.vaddr, e.end()))
                return failf(EINVAL, "{}: entry {}: page {:#x} is marked as in the parent image, but {} lacks it",
                             cur.pagemap_path_, k + 1, *gap, below->pagemap_path_);
        }
        cur.parent_ = std::move(below);
        if (i == 0)
            break;
        below = std::make_unique<PageReader>(std::move(cur));
    }
    return top;
}

Status PageReader::for_each_entry(const std::function<Status(const PageEntry&)>& fn) const {
    for (const auto& e : entries_)
        TRY_VOID(fn(e));
    return {};
}

std::optional<size_t> PageReader::find(uint64_t addr) const {
    // Entries are sorted and disjoint: the candidate is the last one starting at or below addr.
    auto it = std::upper_bound(entries_.begin(), entries_.end(), addr,
                               [](uint64_t a, const PageEntry& e) { return a < e.vaddr; });
    if (it == entries_.begin())
        return std::nullopt;
    --it;
    if (addr >= it->end())
        return std::nullopt;
    return static_cast<size_t>(it - entries_.begin());
}

std::optional<uint64_t> PageReader::first_gap(uint64_t vaddr, uint64_t end) const {
    uint64_t cur = vaddr;
    while (cur < end) {
        auto i = find(cur);
        if (!i)
            return cur;
        cur = entries_[*i].end();
    }
    return std::nullopt;
}

uint64_t PageReader::count_pages(uint32_t flag) const {
    uint64_t n = 0;
    for (const auto& e : entries_)
        if (e.flags & flag)
            n += e.nr_pages;
    return n;
}

std::optional<PageReader::RawLocation> PageReader::raw_location(const PageEntry& e) const {
    if (!e.present() || head_.codec() != images::CODEC_RAW)
        return std::nullopt;
    return RawLocation{pages_fd_.get(), e.offset, e.stored_size};
}

std::shared_ptr<PageReader::Zstd> PageReader::make_decoder() { return std::make_shared<Zstd>(); }

Status PageReader::decode_entry(const PageEntry& e, void* dst, Zstd& z) const {
    if (head_.codec() != images::CODEC_ZSTD || !e.present())
        return failf(EINVAL, "{}: entry at {:#x} is not a zstd frame", pagemap_path_, e.vaddr);
    if (!z.dctx)
        return failf(ENOMEM, "{}: cannot create a zstd context", pagemap_path_);
    // Validation capped stored_size by ZSTD_compressBound of at most kMaxFramePages pages.
    z.comp.resize(e.stored_size);
    size_t got = TRY(pread_full(pages_fd_.get(), z.comp.data(), z.comp.size(), e.offset, pages_path_));
    if (got != e.stored_size)
        return failf(EIO, "{}: frame at offset {}: file shrank ({} of {} bytes read)", pages_path_, e.offset, got,
                     e.stored_size);
    unsigned long long content = ZSTD_getFrameContentSize(z.comp.data(), z.comp.size());
    if (content != e.size())
        return failf(EINVAL, "{}: frame for {:#x} declares {} bytes, the entry has {} pages", pages_path_, e.vaddr,
                     content == ZSTD_CONTENTSIZE_UNKNOWN  ? "an unknown number of"
                     : content == ZSTD_CONTENTSIZE_ERROR ? "an unreadable number of"
                                                         : std::to_string(content),
                     e.nr_pages);
    size_t frame = ZSTD_findFrameCompressedSize(z.comp.data(), z.comp.size());
    if (ZSTD_isError(frame) || frame != e.stored_size)
        return failf(EINVAL, "{}: frame for {:#x} is not exactly {} bytes", pages_path_, e.vaddr, e.stored_size);
    size_t n = ZSTD_decompressDCtx(z.dctx.get(), dst, e.size(), z.comp.data(), z.comp.size());
    if (ZSTD_isError(n))
        return failf(EINVAL, "{}: frame for {:#x}: {}", pages_path_, e.vaddr, ZSTD_getErrorName(n));
    if (n != e.size())
        return failf(EINVAL, "{}: frame for {:#x} decoded to {} bytes, expected {}", pages_path_, e.vaddr, n, e.size());
    return {};
}

Status PageReader::read_present(const PageEntry& e, char* dst) {
    if (head_.codec() == images::CODEC_ZSTD)
        return decode_frame(e, dst);
    size_t got = TRY(pread_full(pages_fd_.get(), dst, e.size(), e.offset, pages_path_));
    if (got != e.size())
        return failf(EIO, "{}: data for {:#x} ends early ({} of {} bytes read)", pages_path_, e.vaddr, got, e.size());
    return {};
}

Status PageReader::read_pages(const PageEntry& e, void* dst) {
    auto i = find(e.vaddr);
    if (!i || entries_[*i] != e)
        return failf(EINVAL, "{}: no entry for {:#x} with {} pages", pagemap_path_, e.vaddr, e.nr_pages);
    if (e.present())
        return read_present(e, static_cast<char*>(dst));
    return read_range(e.vaddr, e.nr_pages, dst);
}

Status PageReader::read_range(uint64_t vaddr, uint64_t nr_pages, void* dst) {
    if (vaddr % kPageSize)
        return failf(EINVAL, "{}: address {:#x} is not page aligned", pagemap_path_, vaddr);
    if (vaddr >= kMaxUserAddress || nr_pages > (kMaxUserAddress - vaddr) / kPageSize)
        return failf(EINVAL, "{}: {} pages at {:#x} reach past the end of user space", pagemap_path_, nr_pages, vaddr);
    char* out = static_cast<char*>(dst);
    uint64_t cur = vaddr, end = vaddr + nr_pages * kPageSize;
    while (cur < end) {
        auto i = find(cur);
        if (!i)
            return failf(ENOENT, "{}: page {:#x} is not in the image", pagemap_path_, cur);
        const PageEntry& e = entries_[*i];
        uint64_t stop = std::min(end, e.end());
        size_t len = stop - cur;
        char* to = out + (cur - vaddr);
        if (e.zero()) {
            std::memset(to, 0, len);
        } else if (e.parent()) {
            if (!parent_)
                return failf(ENOENT, "{}: page {:#x} is in the parent image, which was not opened", pagemap_path_, cur);
            TRY_VOID_CTX(parent_->read_range(cur, len / kPageSize, to), "{}: page {:#x}", pagemap_path_, cur);
        } else if (head_.codec() == images::CODEC_RAW) {
            uint64_t off = e.offset + (cur - e.vaddr);
            size_t got = TRY(pread_full(pages_fd_.get(), to, len, off, pages_path_));
            if (got != len)
                return failf(EIO, "{}: data for {:#x} ends early", pages_path_, cur);
        } else if (cur == e.vaddr && stop == e.end()) {
            TRY_VOID(decode_frame(e, to));
        } else {
            Zstd& z = *zstd_;
            if (z.cached != *i) {
                z.cached.reset();
                z.plain.resize(e.size());  // at most kMaxFramePages pages
                TRY_VOID(decode_frame(e, z.plain.data()));
                z.cached = *i;
            }
            std::memcpy(to, z.plain.data() + (cur - e.vaddr), len);
        }
        cur = stop;
    }
    return {};
}

}  // namespace criu
