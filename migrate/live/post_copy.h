// Post-copy live migration (`criu migrate --post-copy`, used when pre-copy does not converge).
//
// The frozen last round sends the pages of anonymous private writable memory as
// `pages_remote` (no data; the destination records a hole it must fill) and everything else
// as usual. The destination restores lazily (lazy_filler.h) and its filler fills those holes
// by asking the source over the same channel:
//   destination -> page_request {i64 id, u64 vaddr, u32 nr_pages}
//   source      -> page_reply   {i64 id, u64 vaddr, u32 nr_pages} + data
// one request at a time (a fault's 2 MiB window, or the next background window). The source
// answers from its own copy of the last image set (the local scratch chain), from the moment
// it asked for the restore until the destination says `done`; its process is already gone then.
//
// Channel ownership on the destination: from the first process handed to the filler until
// the filler is done, only the filler's thread reads the channel (requests, and the `commit`
// or `error` that may arrive in between, which it passes to the main thread through
// PostCopyLink); every sender holds the channel's mutex.
//
// Failure after the commit point loses the process (inherent to post-copy): the destination
// kills it rather than let it read zero pages (lazy_filler.h), and the source keeps its
// scratch images and says where.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "criu/core/error.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "images/page_sink.h"
#include "migrate/net/channel.h"
#include "migrate/net/page_transfer.h"
#include "restore/lazy_fill.h"

namespace criu {

using RangeList = std::vector<std::pair<uint64_t, uint64_t>>;

// Source: the remote half of the last round's sink. Pages inside `lazy` ranges (anonymous
// private writable VMAs, as restore's vma_can_be_lazy) go as pages_remote, the rest with data.
// A range the destination restores eagerly after all makes its restore fail (it checks), before
// the commit point: the source then resumes.
class PostCopySink : public PageSink {
public:
    // `remote_pages` counts the pages sent as pages_remote (it outlives the sink).
    PostCopySink(std::unique_ptr<RemotePageSink> inner, RangeList lazy, uint64_t* remote_pages)
        : inner_(std::move(inner)), lazy_(std::move(lazy)), remote_(remote_pages) {}
    Status add_pages(uint64_t vaddr, const void* data, size_t nr, bool lazy) override;
    Status add_zero(uint64_t vaddr, size_t nr) override { return inner_->add_zero(vaddr, nr); }
    Status add_parent(uint64_t vaddr, size_t nr) override { return inner_->add_parent(vaddr, nr); }
    Status finish(bool sync) override { return inner_->finish(sync); }
    PageWriterStats stats() const override { return inner_->stats(); }

private:
    std::unique_ptr<RemotePageSink> inner_;
    RangeList lazy_;
    uint64_t* remote_;
};

// Source: the anonymous private writable VMAs of `pid` now (it is frozen).
Expected<RangeList> post_copy_ranges(pid_t pid);

// Source: answers page_request from the local copy of the last image set.
class PostCopySource {
public:
    // `die_at_request` (tests, CRIU_MIGRATE_DIE_AT_PAGE_REQUEST=N): SIGKILL criu itself when
    // the Nth page request arrives, before answering it.
    explicit PostCopySource(std::string set_dir, uint64_t die_at_request = 0)
        : dir_path_(std::move(set_dir)), die_at_(die_at_request) {}
    // Receives until a message of type `want` (returned), answering every page_request on the
    // way. An `error` from the peer becomes that error.
    Expected<Message> expect(Channel& ch, MsgType want, int timeout_ms);
    uint64_t pages_served() const { return pages_; }
    uint64_t requests() const { return requests_; }

private:
    Status answer(Channel& ch, const Message& m);
    std::string dir_path_;
    std::optional<ImageDir> dir_;
    std::map<int64_t, std::unique_ptr<PageReader>> readers_;
    std::vector<uint8_t> buf_;
    uint64_t die_at_;
    uint64_t pages_ = 0, requests_ = 0;
};

// Destination: the filler's side of the channel.
class PostCopyLink {
public:
    explicit PostCopyLink(Channel& ch) : ch_(ch) {}
    // Filler thread: fetches [vaddr, vaddr+len) of process `id` from the source.
    Status fetch(int64_t id, uint64_t vaddr, uint64_t len, char* dst);
    // Filler thread, when the channel is readable between requests: `commit` or `error`.
    Status on_readable();
    // Main thread: waits for the `commit` the filler's thread received.
    Status wait_commit(int timeout_ms);
    uint64_t pages_fetched() const { return pages_; }

private:
    Status take_control(Message m);  // commit or error; anything else is a protocol error
    Status failed(Error e);
    Channel& ch_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool committed_ = false;
    std::optional<Error> error_;
    std::atomic<uint64_t> pages_{0};
};

// Destination: what the filler owes process `reader`'s lazy `ranges`: the pages the images
// hold plus the `remote` ones; fails if a remote range lies outside the lazy memory.
Expected<LazyTracker> post_copy_tracker(const PageReader& reader, const RangeList& ranges, const RangeList& remote,
                                        int64_t id);
// Destination: reads pieces from the images, or from the source where they are remote.
LazyServer::Source post_copy_source(std::shared_ptr<PageReader> reader, RangeList remote, PostCopyLink* link,
                                    int64_t id);

}  // namespace criu
