#include "migrate/net/page_transfer.h"

#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "images/image_io.h"
#include "migrate/cache/byte_io.h"

namespace criu {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint32_t kMaxPagesPerMessage = (kMaxPayload - 64) / kPage;
constexpr uint64_t kUserTop = 1ull << 47;  // x86-64, 4-level paging (57 bits with LA57; refused below)
constexpr int64_t kMaxPid = 4194304;       // PID_MAX_LIMIT

}  // namespace

// ---- sender ------------------------------------------------------------------------

Expected<std::unique_ptr<PageSink>> RemotePageSink::open(Channel& ch, int64_t id, const PageWriterOptions& opts) {
    ByteWriter w;
    w.u64(static_cast<uint64_t>(id));
    w.u8(static_cast<uint8_t>(opts.codec));
    TRY_VOID_CTX(ch.send(MsgType::pages_open, w.bytes()), "sending the pages of {} to {}", id, ch.peer());
    return std::unique_ptr<PageSink>(std::make_unique<RemotePageSink>(ch, id));
}

Status RemotePageSink::add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (nr_pages > 0) {
        uint32_t n = static_cast<uint32_t>(std::min<size_t>(nr_pages, kMaxPagesPerMessage));
        ByteWriter w;
        w.u64(vaddr);
        w.u32(n);
        w.u8(lazy ? 1 : 0);
        TRY_VOID_CTX(ch_.send(MsgType::pages_data, w.bytes(), {p, n * kPage}), "sending pages of {} to {}", id_,
                     ch_.peer());
        st_.pages_present += n;
        st_.bytes_in += n * kPage;
        p += n * kPage;
        vaddr += n * kPage;
        nr_pages -= n;
    }
    return {};
}

Status RemotePageSink::range(MsgType t, uint64_t vaddr, size_t nr_pages) {
    ByteWriter w;
    w.u64(vaddr);
    w.u32(static_cast<uint32_t>(nr_pages));
    return ch_.send(t, w.bytes());
}

Status RemotePageSink::add_remote(uint64_t vaddr, size_t nr_pages) { return range(MsgType::pages_remote, vaddr, nr_pages); }

Status RemotePageSink::add_zero(uint64_t vaddr, size_t nr_pages) {
    st_.pages_zero += nr_pages;
    return range(MsgType::pages_zero, vaddr, nr_pages);
}

Status RemotePageSink::add_parent(uint64_t vaddr, size_t nr_pages) {
    st_.pages_parent += nr_pages;
    return range(MsgType::pages_parent, vaddr, nr_pages);
}

Status RemotePageSink::finish(bool) {
    if (finished_)
        return failf(EINVAL, "pages of {}: finish called twice", id_);
    finished_ = true;
    TRY_VOID(ch_.send(MsgType::pages_close, {}));
    Message m = TRY_CTX(ch_.expect(MsgType::pages_done), "pages of {} on {}", id_, ch_.peer());
    ByteReader r(m.payload);
    uint64_t pages = 0, stored = 0;
    if (!r.u64(pages) || !r.u64(stored) || r.left())
        return failf(EBADMSG, "{}: malformed pages_done", ch_.peer());
    if (pages != st_.pages_present)
        return failf(EIO, "{} stored {} pages of {}, {} were sent", ch_.peer(), pages, id_, st_.pages_present);
    st_.bytes_stored = stored;
    return {};
}

// ---- receiver ----------------------------------------------------------------------

// The PageWriter calls of one receiver, in arrival order, on a thread of their own.
struct PageReceiver::Writer {
    static constexpr size_t kMaxQueued = 3;  // 4 MiB frames: bounded memory, enough to overlap
    enum class Kind { data, zero, parent };
    struct Job {
        Kind kind;
        uint64_t vaddr;
        uint32_t nr;
        bool lazy;
        Payload buf;  // data: the whole payload, pages from `off`
        size_t off;
    };
    PageWriter* pw = nullptr;  // the open process's writer; set only while the queue is empty
    std::mutex m;
    std::condition_variable cv;
    std::deque<Job> queue;
    bool busy = false;
    bool stopping = false;
    std::optional<Error> error;
    std::vector<Payload> spare;
    std::thread thread;

    Writer() { thread = std::thread([this] { run(); }); }
    ~Writer() {
        {
            std::lock_guard l(m);
            stopping = true;
        }
        cv.notify_all();
        thread.join();
    }
    void run() {
        for (;;) {
            Job j;
            bool skip;
            {
                std::unique_lock l(m);
                cv.wait(l, [&] { return stopping || !queue.empty(); });
                if (queue.empty())
                    return;
                j = std::move(queue.front());
                queue.pop_front();
                busy = true;
                skip = error.has_value();
            }
            Status st;
            if (!skip) {
                if (j.kind == Kind::data)
                    st = pw->add_pages(j.vaddr, j.buf.data() + j.off, j.nr, j.lazy);
                else if (j.kind == Kind::zero)
                    st = pw->add_zero(j.vaddr, j.nr);
                else
                    st = pw->add_parent(j.vaddr, j.nr);
            }
            {
                std::lock_guard l(m);
                if (!st && !error)
                    error = std::move(st.error());
                if (j.buf.capacity() && spare.size() < kMaxQueued)
                    spare.push_back(std::move(j.buf));
                busy = false;
            }
            cv.notify_all();
        }
    }
    Status push(Job j) {
        std::unique_lock l(m);
        cv.wait(l, [&] { return queue.size() < kMaxQueued || error; });
        if (error)
            return std::unexpected(*error);
        queue.push_back(std::move(j));
        l.unlock();
        cv.notify_all();
        return {};
    }
    Status drain() {
        std::unique_lock l(m);
        cv.wait(l, [&] { return queue.empty() && !busy; });
        if (error)
            return std::unexpected(*error);
        return {};
    }
};

PageReceiver::PageReceiver(const ImageDir& dir, Log& log, PageReceiverOptions opts)
    : dir_(dir), log_(log), opts_(opts) {}

PageReceiver::~PageReceiver() {
    writer_.reset();  // before cur_: the thread may be inside it
}

Status PageReceiver::drain() { return writer_ ? writer_->drain() : Status{}; }

Payload PageReceiver::spare_buffer() {
    if (!writer_)
        return {};
    std::lock_guard l(writer_->m);
    if (writer_->spare.empty())
        return {};
    Payload p = std::move(writer_->spare.back());
    writer_->spare.pop_back();
    return p;
}

Status PageReceiver::check_range(uint64_t vaddr, uint64_t nr) {
    if (!cur_)
        return fail(EPROTO, "pages before pages_open");
    if (vaddr % kPage || nr == 0 || vaddr >= kUserTop || nr > (kUserTop - vaddr) / kPage)
        return failf(EBADMSG, "process {}: bad page range {:#x} + {} pages", id_, vaddr, nr);
    if (vaddr < next_)
        return failf(EBADMSG, "process {}: range at {:#x} is below the end of the previous one ({:#x})", id_, vaddr,
                     next_);
    next_ = vaddr + nr * kPage;
    return {};
}

Expected<bool> PageReceiver::handle(Channel& ch, Message& m) {
    ByteReader r(m.payload);
    switch (m.type) {
    case MsgType::pages_open: {
        uint64_t id = 0;
        uint8_t codec = 0;
        if (!r.u64(id) || !r.u8(codec) || r.left())
            return fail(EBADMSG, "malformed pages_open");
        auto sid = static_cast<int64_t>(id);
        if (sid <= 0 || sid > kMaxPid)
            return failf(EBADMSG, "pages_open for id {}: not a pid", sid);
        if (cur_)
            return failf(EPROTO, "pages_open for {} while {} is still open", sid, id_);
        if (codec != images::CODEC_RAW && codec != images::CODEC_ZSTD)
            return failf(EBADMSG, "pages_open for {}: unknown codec {}", sid, codec);
        for (int64_t c : created_)
            if (c == sid)
                return failf(EPROTO, "pages of {} sent twice", sid);
        PageWriterOptions o;
        o.codec = static_cast<PageCodec>(codec);
        o.direct_io = opts_.direct_io;
        created_.push_back(sid);
        cur_ = std::make_unique<PageWriter>(TRY(PageWriter::create(dir_, sid, o)));
        if (opts_.writer_thread) {
            writer_ = std::make_unique<Writer>();
            writer_->pw = cur_.get();
        }
        id_ = sid;
        next_ = 0;
        log_.debug("pages", "{}: receiving the pages of {}", ch.peer(), sid);
        return true;
    }
    case MsgType::pages_data: {
        uint64_t vaddr = 0;
        uint32_t nr = 0;
        uint8_t lazy = 0;
        if (!r.u64(vaddr) || !r.u32(nr) || !r.u8(lazy) || lazy > 1)
            return fail(EBADMSG, "malformed pages_data");
        if (nr > kMaxPagesPerMessage)
            return failf(EBADMSG, "process {}: pages_data of {} pages is over the cap", id_, nr);
        TRY_VOID(check_range(vaddr, nr));
        if (r.left() != uint64_t(nr) * kPage)
            return failf(EBADMSG, "process {}: pages_data at {:#x} says {} pages and carries {} bytes", id_, vaddr, nr,
                         r.left());
        if (writer_)
            TRY_VOID(writer_->push({Writer::Kind::data, vaddr, nr, lazy != 0, std::move(m.payload), r.pos()}));
        else
            TRY_VOID(cur_->add_pages(vaddr, m.payload.data() + r.pos(), nr, lazy));
        pages_ += nr;
        return true;
    }
    case MsgType::pages_zero:
    case MsgType::pages_parent:
    case MsgType::pages_remote: {
        uint64_t vaddr = 0;
        uint32_t nr = 0;
        if (!r.u64(vaddr) || !r.u32(nr) || r.left())
            return failf(EBADMSG, "malformed {}", msg_type_name(m.type));
        TRY_VOID(check_range(vaddr, nr));
        if (m.type == MsgType::pages_remote) {
            // A hole in the images, filled only through post-copy: zero in the pagemap (so
            // the chain stays well formed), and remembered as owed by the sender.
            TRY_VOID(writer_ ? writer_->push({Writer::Kind::zero, vaddr, nr, false, {}, 0}) : cur_->add_zero(vaddr, nr));
            Ranges& rr = remote_[id_];
            uint64_t end = vaddr + uint64_t(nr) * kPage;
            if (!rr.empty() && rr.back().second == vaddr)
                rr.back().second = end;
            else
                rr.emplace_back(vaddr, end);
            return true;
        }
        if (writer_)
            TRY_VOID(writer_->push({m.type == MsgType::pages_zero ? Writer::Kind::zero : Writer::Kind::parent, vaddr,
                                    nr, false, {}, 0}));
        else
            TRY_VOID(m.type == MsgType::pages_zero ? cur_->add_zero(vaddr, nr) : cur_->add_parent(vaddr, nr));
        return true;
    }
    case MsgType::pages_close: {
        if (!cur_)
            return fail(EPROTO, "pages_close without pages_open");
        if (r.left())
            return fail(EBADMSG, "malformed pages_close");
        TRY_VOID_CTX(drain(), "pages of {}", id_);
        // The thread and its buffers go with the process: nothing of it stays around while
        // the destination restores (one receiver per image set, a dozen sets per migration).
        writer_.reset();
        TRY_VOID_CTX(cur_->finish(opts_.sync), "pages of {}", id_);
        const PageWriterStats& s = cur_->stats();
        stored_ += s.bytes_stored;
        ByteWriter w;
        w.u64(s.pages_present);
        w.u64(s.bytes_stored);
        log_.info("pages", "{}: pages of {} complete: {} pages, {} bytes stored", ch.peer(), id_, s.pages_present,
                  s.bytes_stored);
        cur_.reset();
        TRY_VOID(ch.send(MsgType::pages_done, w.bytes()));
        return true;
    }
    default:
        return false;
    }
}

Status PageReceiver::add_data(uint64_t vaddr, const uint8_t* data, uint32_t nr) {
    TRY_VOID(check_range(vaddr, nr));
    TRY_VOID(drain());  // `data` is the caller's only during this call: in order, here
    TRY_VOID(cur_->add_pages(vaddr, data, nr));
    pages_ += nr;
    return {};
}

void PageReceiver::discard() {
    (void)drain();  // its error is the failure being cleaned up after
    cur_.reset();
    for (int64_t id : created_) {
        for (const char* prefix : {"pages-", "pagemap-"}) {
            std::string name = fmt::format("{}{}.img", prefix, id);
            if (unlinkat(dir_.fd(), name.c_str(), 0) == 0)
                log_.info("pages", "removed the partial {}", dir_.file_path(name));
        }
    }
    created_.clear();
}

}  // namespace criu
