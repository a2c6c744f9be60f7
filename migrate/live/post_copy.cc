#include "migrate/live/post_copy.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "criu/core/proc_parse.h"
#include "migrate/cache/byte_io.h"
#include "restore/lazy_pages.h"

namespace criu {

namespace {

constexpr uint64_t kPage = 4096;
// One reply carries at most 4 MiB (the channel's cap, with its 20-byte header).
constexpr uint32_t kMaxRequestPages = 1024;
constexpr uint64_t kUserTop = 1ull << 47;

// Where `a` falls in the sorted, disjoint `r`: the range holding it, or the next one.
RangeList::const_iterator at_or_after(const RangeList& r, uint64_t a) {
    return std::upper_bound(r.begin(), r.end(), a, [](uint64_t x, const auto& p) { return x < p.second; });
}

}  // namespace

// ---- source --------------------------------------------------------------------------

Expected<RangeList> post_copy_ranges(pid_t pid) {
    RangeList out;
    for (const MapsEntry& m : TRY(read_maps(pid))) {
        // restore/page_plan.cc vma_can_be_lazy: anonymous private (heap, stack) and writable.
        bool anon = m.ino == 0 && (m.path.empty() || m.path == "[heap]" || m.path == "[stack]");
        if (anon && !m.shared && m.write && m.read)
            out.emplace_back(m.start, m.end);
    }
    return out;
}

Status PostCopySink::add_pages(uint64_t vaddr, const void* data, size_t nr, bool lazy) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t end = vaddr + nr * kPage;
    while (vaddr < end) {
        auto it = at_or_after(lazy_, vaddr);
        bool remote = it != lazy_.end() && it->first <= vaddr;
        uint64_t stop = remote ? std::min(end, it->second) : std::min(end, it != lazy_.end() ? it->first : end);
        size_t n = (stop - vaddr) / kPage;
        if (remote) {
            TRY_VOID(inner_->add_remote(vaddr, n));
            *remote_ += n;
        } else {
            TRY_VOID(inner_->add_pages(vaddr, p, n, lazy));
        }
        p += n * kPage;
        vaddr = stop;
    }
    return {};
}

Status PostCopySource::answer(Channel& ch, const Message& m) {
    ByteReader r(m.payload);
    uint64_t id = 0, vaddr = 0;
    uint32_t nr = 0;
    if (!r.u64(id) || !r.u64(vaddr) || !r.u32(nr) || r.left() || nr == 0 || nr > kMaxRequestPages ||
        vaddr % kPage || vaddr >= kUserTop || nr > (kUserTop - vaddr) / kPage)
        return fail(EBADMSG, "malformed page_request");
    if (die_at_ && requests_ + 1 >= die_at_)
        ::kill(::getpid(), SIGKILL);
    if (!dir_)
        dir_.emplace(TRY(ImageDir::open(dir_path_)));
    auto& rd = readers_[int64_t(id)];
    if (!rd)
        rd = std::make_unique<PageReader>(
            TRY_CTX(PageReader::open(*dir_, int64_t(id)), "page_request for process {}", int64_t(id)));
    buf_.resize(size_t(nr) * kPage);
    TRY_VOID_CTX(rd->read_range(vaddr, nr, buf_.data()), "page_request for process {}", int64_t(id));
    ByteWriter w;
    w.u64(id);
    w.u64(vaddr);
    w.u32(nr);
    std::lock_guard lk(ch.mutex());
    TRY_VOID(ch.send(MsgType::page_reply, w.bytes(), buf_));
    pages_ += nr;
    requests_++;
    return {};
}

Expected<Message> PostCopySource::expect(Channel& ch, MsgType want, int timeout_ms) {
    for (;;) {
        Message m = TRY(ch.recv(timeout_ms));
        if (m.type == want)
            return m;
        if (m.type == MsgType::error)
            return std::unexpected(error_from_payload(m.payload, ch.peer()));
        if (m.type != MsgType::page_request)
            return failf(EPROTO, "{} while waiting for {}", msg_type_name(m.type), msg_type_name(want));
        TRY_VOID(answer(ch, m));
    }
}

// ---- destination ---------------------------------------------------------------------

Status PostCopyLink::failed(Error e) {
    {
        std::lock_guard lk(mu_);
        if (!error_)
            error_ = e;
    }
    cv_.notify_all();
    return std::unexpected(std::move(e));
}

Status PostCopyLink::take_control(Message m) {
    if (m.type == MsgType::commit) {
        {
            std::lock_guard lk(mu_);
            committed_ = true;
        }
        cv_.notify_all();
        return {};
    }
    if (m.type == MsgType::error)
        return failed(error_from_payload(m.payload, ch_.peer()));
    return failed(Error(EPROTO, fmt::format("post-copy: unexpected {} from {}", msg_type_name(m.type), ch_.peer())));
}

Status PostCopyLink::fetch(int64_t id, uint64_t vaddr, uint64_t len, char* dst) {
    while (len) {
        uint32_t nr = uint32_t(std::min<uint64_t>(len / kPage, kMaxRequestPages));
        ByteWriter w;
        w.u64(uint64_t(id));
        w.u64(vaddr);
        w.u32(nr);
        {
            std::lock_guard lk(ch_.mutex());
            if (Status st = ch_.send(MsgType::page_request, w.bytes()); !st)
                return failed(st.error());
        }
        for (;;) {
            auto m = ch_.recv();
            if (!m)
                return failed(m.error());
            if (m->type != MsgType::page_reply) {
                TRY_VOID(take_control(std::move(*m)));
                continue;
            }
            ByteReader r(m->payload);
            uint64_t rid = 0, rv = 0;
            uint32_t rn = 0;
            if (!r.u64(rid) || !r.u64(rv) || !r.u32(rn) || int64_t(rid) != id || rv != vaddr || rn != nr ||
                r.left() != uint64_t(nr) * kPage)
                return failed(Error(EBADMSG, fmt::format("post-copy: a page_reply that does not answer the request "
                                                         "for {} pages at {:#x} of process {}", nr, vaddr, id)));
            std::memcpy(dst, m->payload.data() + r.pos(), size_t(nr) * kPage);
            break;
        }
        pages_ += nr;
        dst += size_t(nr) * kPage;
        vaddr += uint64_t(nr) * kPage;
        len -= uint64_t(nr) * kPage;
    }
    return {};
}

Status PostCopyLink::on_readable() {
    auto m = ch_.recv();
    if (!m)
        return failed(m.error());
    return take_control(std::move(*m));
}

Status PostCopyLink::wait_commit(int timeout_ms) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return committed_ || error_; }))
        return failf(ETIMEDOUT, "no commit from {} after {} ms", ch_.peer(), timeout_ms);
    if (error_)
        return std::unexpected(*error_);
    return {};
}

Expected<LazyTracker> post_copy_tracker(const PageReader& reader, const RangeList& ranges, const RangeList& remote,
                                        int64_t id) {
    RangeList owed = image_pages_in(reader, ranges);
    for (const auto& [s, en] : remote) {
        // Every remote page must lie in lazily restored memory: elsewhere the restore would have
        // mapped the zero the pagemap records.
        uint64_t cur = s;
        for (auto it = at_or_after(ranges, cur); cur < en && it != ranges.end() && it->first <= cur; ++it)
            cur = std::min(en, it->second);
        if (cur < en)
            return failf(EINVAL, "post-copy: process {}: the source's pages at {:#x} lie outside the memory "
                                 "restored lazily here", id, cur);
        owed.emplace_back(s, en);
    }
    std::sort(owed.begin(), owed.end());
    LazyTracker t;
    for (const auto& [a, b] : owed)
        t.add(a, b);
    return t;
}

LazyServer::Source post_copy_source(std::shared_ptr<PageReader> reader, RangeList remote, PostCopyLink* link,
                                    int64_t id) {
    return [reader, remote = std::move(remote), link, id](uint64_t a, uint64_t len, char* dst) -> Status {
        const uint64_t end = a + len;
        while (a < end) {
            auto it = at_or_after(remote, a);
            bool far = it != remote.end() && it->first <= a;
            uint64_t stop = far ? std::min(end, it->second) : std::min(end, it != remote.end() ? it->first : end);
            if (far)
                TRY_VOID(link->fetch(id, a, stop - a, dst));
            else
                TRY_VOID(reader->read_range(a, (stop - a) / kPage, dst));
            dst += stop - a;
            a = stop;
        }
        return {};
    };
}

}  // namespace criu
