#include "restore/lazy_fill.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace criu {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t align_down(uint64_t x, uint64_t a) { return x / a * a; }

}  // namespace

void LazyTracker::add(uint64_t start, uint64_t end) {
    if (end <= start)
        return;
    uint64_t pages = (end - start) / kPage;
    total_ += pages;
    missing_ += pages;
    if (!ranges_.empty()) {
        Range& last = ranges_.back();
        if (last.end == start && last.src + (last.end - last.start) == start) {
            last.end = end;
            last.done.resize(last.done.size() + pages, false);
            last.missing += pages;
            return;
        }
    }
    ranges_.push_back(Range{start, end, start, std::vector<bool>(pages, false), pages});
}

const LazyTracker::Range* LazyTracker::find(uint64_t addr) const {
    for (auto it = ranges_.rbegin(); it != ranges_.rend(); ++it)
        if (it->start <= addr && addr < it->end)
            return &*it;
    return nullptr;
}

std::vector<LazyPiece> LazyTracker::on_fault(uint64_t addr, uint64_t window) const {
    addr = align_down(addr, kPage);
    const Range* r = find(addr);
    if (!r || r->done[(addr - r->start) / kPage])
        return {};
    uint64_t w0 = std::max(r->start, align_down(addr, window));
    uint64_t w1 = std::min(r->end, align_down(addr, window) + window);
    auto piece = [&](uint64_t a, uint64_t b) { return LazyPiece{a, b, r->src + (a - r->start)}; };
    // The run holding addr first, so the faulting thread wakes as early as possible.
    uint64_t a = addr, b = addr;
    while (a > w0 && !r->done[(a - kPage - r->start) / kPage])
        a -= kPage;
    while (b < w1 && !r->done[(b - r->start) / kPage])
        b += kPage;
    std::vector<LazyPiece> out{piece(a, b)};
    for (uint64_t x = w0; x < w1;) {
        if (x == a) {
            x = b;
            continue;
        }
        if (r->done[(x - r->start) / kPage]) {
            x += kPage;
            continue;
        }
        uint64_t y = x;
        while (y < w1 && y != a && !r->done[(y - r->start) / kPage])
            y += kPage;
        out.push_back(piece(x, y));
        x = y;
    }
    return out;
}

std::optional<LazyPiece> LazyTracker::next_missing(uint64_t max_len) const {
    for (const Range& r : ranges_) {
        if (r.missing == 0)
            continue;
        size_t i = 0;
        while (r.done[i])
            i++;
        uint64_t a = r.start + i * kPage, b = a;
        while (b < r.end && b - a < max_len && !r.done[(b - r.start) / kPage])
            b += kPage;
        return LazyPiece{a, b, r.src + (a - r.start)};
    }
    return std::nullopt;
}

void LazyTracker::settle(uint64_t start, uint64_t end) {
    for (Range& r : ranges_) {
        uint64_t a = std::max(r.start, align_down(start, kPage)), b = std::min(r.end, end);
        for (uint64_t x = a; x < b; x += kPage) {
            auto bit = r.done[(x - r.start) / kPage];
            if (!bit) {
                bit = true;
                r.missing--;
                missing_--;
            }
        }
    }
}

void LazyTracker::remap(uint64_t from, uint64_t to, uint64_t len) {
    std::vector<Range> moved;
    for (const Range& r : ranges_) {
        uint64_t a = std::max(r.start, from), b = std::min(r.end, from + len);
        if (a >= b)
            continue;
        Range n{to + (a - from), to + (b - from), r.src + (a - r.start), {}, 0};
        for (uint64_t x = a; x < b; x += kPage) {
            bool d = r.done[(x - r.start) / kPage];
            n.done.push_back(d);
            n.missing += d ? 0 : 1;
        }
        moved.push_back(std::move(n));
    }
    // The old place is gone, and whatever was at the new place was unmapped by the move.
    settle(from, from + len);
    settle(to, to + len);
    for (Range& n : moved) {
        missing_ += n.missing;
        ranges_.push_back(std::move(n));
    }
}

LazyServer::LazyServer(int pid, UniqueFd uffd, LazyTracker tracker, Source read_src)
    : pid_(pid), uffd_(std::move(uffd)), tracker_(std::move(tracker)), read_src_(std::move(read_src)) {
    int fl = ::fcntl(uffd_.get(), F_GETFL);
    if (fl >= 0)
        ::fcntl(uffd_.get(), F_SETFL, fl | O_NONBLOCK);
}

Status LazyServer::zero_page(uint64_t addr) {
    uffdio_zeropage z{};
    z.range.start = addr;
    z.range.len = kPage;
    if (::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &z) == 0) {
        stats_.pages_zero++;
        return {};
    }
    if (errno == ESRCH) {
        gone_ = true;
        return {};
    }
    // EEXIST: the page is there already; EAGAIN/ENOENT: the mapping changes under us. Either
    // way waking the thread makes it retry, and a fault that remains comes back as a new event.
    uffdio_range w{addr, kPage};
    if (::ioctl(uffd_.get(), UFFDIO_WAKE, &w) < 0 && errno == ESRCH)
        gone_ = true;
    return {};
}

Expected<bool> LazyServer::copy(const LazyPiece& p) {
    uint64_t len = p.end - p.start;
    buf_.resize(len);
    TRY_VOID_CTX(read_src_(p.src, len, buf_.data()), "pid {}: pages at {:#x}", pid_, p.src);
    uint64_t done = 0;
    while (done < len) {
        uffdio_copy c{};
        c.dst = p.start + done;
        c.src = reinterpret_cast<uint64_t>(buf_.data() + done);
        c.len = len - done;
        stats_.copy_calls++;
        int r = ::ioctl(uffd_.get(), UFFDIO_COPY, &c);
        int err = errno;
        uint64_t got = c.copy > 0 ? uint64_t(c.copy) : 0;
        if (r == 0)
            got = len - done;
        if (got) {
            tracker_.settle(c.dst, c.dst + got);
            stats_.pages_copied += got / kPage;
            done += got;
        }
        if (r == 0)
            continue;
        switch (err) {
        case EEXIST:  // this page is in already: skip it
            tracker_.settle(p.start + done, p.start + done + kPage);
            done += kPage;
            break;
        case EAGAIN:  // a non-cooperative event is pending: read it first
            return false;
        case ESRCH:
            gone_ = true;
            return false;
        case ENOENT:
        case EINVAL: {
            // Nothing registered there any more. The kernel looks the mapping up before it checks
            // for a pending non-cooperative event, so an mremap whose UFFD_EVENT_REMAP is not read
            // yet (or not even posted) shows as ENOENT too: settling now would mark pages done
            // that the event then carries to their new place, where they would read as zeros.
            // Read the events first; only a change that no event explains for a while is final.
            const uint64_t at = p.start + done;
            const auto now = std::chrono::steady_clock::now();
            if (!unmapped_ || unmapped_->addr != at)
                unmapped_ = Unmapped{at, now};
            if (now - unmapped_->since < kNoEventLimit)
                return false;
            unmapped_.reset();
            tracker_.settle(at, p.end);
            return true;
        }
        default:
            return fail(err, fmt::format("pid {}: UFFDIO_COPY of {} bytes at {:#x}: {}", pid_, len - done,
                                         p.start + done, std::strerror(err)));
        }
    }
    return true;
}

Status LazyServer::handle_events() {
    std::vector<uint64_t> retry;
    for (;;) {
        uffd_msg msgs[32];
        ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {  // the process is gone (or the fd is no longer usable)
            gone_ = true;
            return {};
        }
        for (size_t i = 0; i < size_t(n) / sizeof(uffd_msg); i++) {
            const uffd_msg& m = msgs[i];
            switch (m.event) {
            case UFFD_EVENT_PAGEFAULT:
                stats_.faults++;
                retry.push_back(m.arg.pagefault.address);
                break;
            case UFFD_EVENT_REMOVE:
                tracker_.settle(m.arg.remove.start, m.arg.remove.end);
                unmapped_.reset();
                break;
            case UFFD_EVENT_UNMAP:
                tracker_.settle(m.arg.remove.start, m.arg.remove.end);
                unmapped_.reset();
                break;
            case UFFD_EVENT_REMAP:
                tracker_.remap(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
                unmapped_.reset();
                break;
            default:
                break;
            }
        }
        // Faults after the events read with them: a fault is answered with the picture those
        // events give. One that cannot be answered yet (EAGAIN) waits for the next round.
        std::vector<uint64_t> again;
        for (uint64_t addr : retry) {
            auto pieces = tracker_.on_fault(addr, kWindow);
            if (pieces.empty()) {
                TRY_VOID(zero_page(align_down(addr, kPage)));
                continue;
            }
            bool ok = TRY(copy(pieces.front()));
            if (!ok) {
                if (!gone_)
                    again.push_back(addr);
                continue;
            }
            for (size_t k = 1; k < pieces.size(); k++)
                if (!TRY(copy(pieces[k])))
                    break;
        }
        retry = std::move(again);
        if (gone_)
            return {};
    }
    // Left over faults (EAGAIN with no event read since): wake them; they fault again.
    for (uint64_t addr : retry) {
        uffdio_range w{align_down(addr, kPage), kPage};
        ::ioctl(uffd_.get(), UFFDIO_WAKE, &w);
    }
    return {};
}

Expected<bool> LazyServer::fill_background() {
    if (gone_)
        return false;
    auto p = tracker_.next_missing(kWindow);
    if (!p)
        return false;
    TRY(copy(*p));
    return true;
}

}  // namespace criu
