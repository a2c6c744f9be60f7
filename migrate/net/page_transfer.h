// Pages over a Channel: the sending PageSink (a dump's pages to a page server or a
// migration destination) and the receiving end, which feeds one PageWriter per process
// in its image directory, so the receiver holds ordinary pages-/pagemap- images.
//
//   pages_open   {i64 id, u8 codec}                       -> nothing (errors come back as `error`)
//   pages_data   {u64 vaddr, u32 nr_pages, u8 lazy} + data
//   pages_zero   {u64 vaddr, u32 nr_pages}
//   pages_parent {u64 vaddr, u32 nr_pages}
//   pages_close  {}                                       -> pages_done {u64 pages, u64 bytes_stored}
// The sender does not wait between batches (TCP is the flow control); it waits once, for
// pages_done, so a dump only counts as written once the receiver has the pagemap.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/log.h"
#include "images/image_dir.h"
#include "images/page_sink.h"
#include "migrate/net/channel.h"

namespace criu {

class RemotePageSink : public PageSink {
public:
    // `ch` must outlive the sink; one sink at a time per channel.
    static Expected<std::unique_ptr<PageSink>> open(Channel& ch, int64_t id, const PageWriterOptions& opts);

    Status add_pages(uint64_t vaddr, const void* data, size_t nr_pages, bool lazy = false) override;
    Status add_zero(uint64_t vaddr, size_t nr_pages) override;
    Status add_parent(uint64_t vaddr, size_t nr_pages) override;
    Status finish(bool sync = false) override;
    PageWriterStats stats() const override { return st_; }
    // Post-copy: pages the receiver will ask for later (page_request); recorded there as zero
    // in the pagemap and listed in PageReceiver::remote_ranges().
    Status add_remote(uint64_t vaddr, size_t nr_pages);

    RemotePageSink(Channel& ch, int64_t id) : ch_(ch), id_(id) {}

private:
    Status range(MsgType t, uint64_t vaddr, size_t nr_pages);
    Channel& ch_;
    int64_t id_;
    PageWriterStats st_;
    bool finished_ = false;
};

// How the receiver stores pages.
struct PageReceiverOptions {
    // fsync each process's pages before pages_done (a page server's dump must survive a crash).
    bool sync = true;
    // O_DIRECT for the pages file, as a local dump writes it.
    bool direct_io = true;
    // Page data goes to the PageWriter on a thread of its own (its copy into the writer's
    // buffer and the O_DIRECT write), while the receiving thread reads and decrypts the next
    // frame. Errors come back on the next message of the process, at the latest pages_close.
    bool writer_thread = false;
};

class PageReceiver {
public:
    PageReceiver(const ImageDir& dir, Log& log, PageReceiverOptions opts = {});
    ~PageReceiver();

    // Handles `m` if it is a page message (true), answering on `ch` where the protocol
    // says so. A malformed or out-of-order message is an error naming the process and
    // the range; nothing of it is written.
    Expected<bool> handle(Channel& ch, Message& m);
    // A payload the writer thread is done with, for Channel::recycle (empty if none).
    Payload spare_buffer();
    // Pages that arrived another way (by content key through the chunk cache), checked like
    // pages_data.
    Status add_data(uint64_t vaddr, const uint8_t* data, uint32_t nr_pages);
    // No process is half received.
    bool idle() const { return !cur_; }
    // Removes every pages-/pagemap- image this receiver created (a transfer that failed).
    void discard();

    uint64_t pages_received() const { return pages_; }
    // Post-copy: per process, the [start, end) ranges announced by pages_remote, in order.
    using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;
    const std::map<int64_t, Ranges>& remote_ranges() const { return remote_; }
    uint64_t bytes_stored() const { return stored_; }

private:
    struct Writer;
    Status check_range(uint64_t vaddr, uint64_t nr);
    Status drain();  // every queued write done; the writer thread's first error
    const ImageDir& dir_;
    Log& log_;
    PageReceiverOptions opts_;
    int64_t id_ = 0;
    std::unique_ptr<PageWriter> cur_;
    std::unique_ptr<Writer> writer_;  // after cur_: stops before cur_ goes
    uint64_t next_ = 0;  // lowest address the next range may start at
    std::vector<int64_t> created_;
    std::map<int64_t, Ranges> remote_;
    uint64_t pages_ = 0, stored_ = 0;
};

}  // namespace criu
