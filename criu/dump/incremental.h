// How one dump or pre-dump relates to the image set before it (--prev-images-dir) and to the
// dirty tracking that goes on after it.
//
// With a parent set, the changed pages are found, in this order of preference:
//   1. exact tracking that has run since the parent was taken: the parent records it in
//      track-<pid>.txt (method, process start time, agent session and generation). For uffd-wp
//      the tracking agent of the pid (migrate/track/track_agent.h) is asked for every page
//      written since that generation; for soft-dirty the bits are read directly;
//   2. otherwise page hashes (pagehash-<pid>.bin, page_hashes.h): every page is read and
//      compared with the parent's hash. The log and the stats (tracking_fallback) say why.
// A pre-dump (and a dump with --leave-running --track-mem) also makes sure tracking continues
// after it: the agent that answered keeps going, or a new tracker is armed while the process
// is stopped, before its pages are read, and handed to a new agent once the images are written.
//
// inventory.dirty_tracking records the method an increment used ("" for a full copy).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "criu/core/error.h"
#include "criu/core/seized_process.h"
#include "criu/dump/dump_context.h"
#include "criu/dump/page_dumper.h"
#include "criu/dump/page_hashes.h"
#include "migrate/track/dirty_tracker.h"
#include "migrate/track/uffd_tracker.h"
#include "proto/inventory.pb.h"
#include "proto/stats.pb.h"

namespace criu {

// A tracker this criu process runs itself while the process runs (dump --pre-copy): the final
// dump collects from it instead of asking an agent.
struct LiveTracking {
    DirtyTracker* tracker = nullptr;
    RangeSet carry;  // pages a pre-copy round could not read (unmapped meanwhile): dirty as well
    std::vector<images::PreCopyRound> rounds;  // for the stats
    uint64_t pre_copy_time_us = 0;
};

// track-<pid>.txt: "key value" lines.
struct TrackRecord {
    std::string method;       // "uffd-wp" or "soft-dirty"
    uint64_t start_time = 0;  // /proc/PID/stat field 22
    uint64_t session = 0;     // uffd-wp: the agent's session
    uint64_t generation = 0;  // uffd-wp: the agent's generation right after this image set

    static std::string file_name(pid_t pid);
    std::string encode() const;
    // Strict: unknown keys, bad numbers or a missing key are errors naming `what`.
    static Expected<TrackRecord> decode(std::string_view text, std::string_view what);
};

class IncrementalDump {
public:
    enum class Kind { PreDump, Dump };

    // Before the seize: validates the parent set (a broken parent would make this one
    // unrestorable) and reads its hashes, page coverage and tracking record.
    // With `live`, the dirty set comes from that tracker (the parent is the last pre-copy round).
    static Expected<std::unique_ptr<IncrementalDump>> prepare(DumpContext& ctx, pid_t pid, Kind kind,
                                                              LiveTracking* live = nullptr);

    // Pre-dump, before anything is stopped: asks the parent's tracking agent for the pages
    // written since. Its collect reports and write-protects each page again in one atomic step,
    // so it needs no stopped process as long as the copy comes after it. True when it answered:
    // the pre-dump then never stops the process (before_pages() has nothing left to do).
    // Otherwise the fallback is noted and before_pages() arms a new tracker.
    bool collect_while_running();

    // With the process stopped, right before its pages are read (after any syscall ran in it):
    // collects the dirty set, or starts a new tracker for the rounds to come. A pre-dump then
    // resumes the process and calls after_resume() before it copies anything.
    Status before_pages(SeizedProcess& sp);
    // Pre-dump, once the process runs again: arms the tracker before_pages() started (its
    // write-protection needs no stopped process). The copy must come after this.
    void after_resume();

    const PageHashes* parent_hashes() const { return parent_hashes_.empty() ? nullptr : &parent_hashes_; }
    PageHashes* hashes() { return record_hashes_ ? &hashes_ : nullptr; }
    const DirtyPlan* plan() const { return plan_ ? &*plan_ : nullptr; }

    // After the pages, before the inventory and before the process runs again: hands a new
    // tracker to an agent, writes track-<pid>.txt and pagehash-<pid>.bin.
    Status finish();
    // For the root of the dump: inventory.dirty_tracking, and the stats (method, fallback,
    // pre-copy rounds).
    void describe(images::Inventory& inv);

private:
    IncrementalDump(DumpContext& ctx, pid_t pid, Kind kind) : ctx_(ctx), pid_(pid), kind_(kind) {}
    bool keeps_tracking() const;
    void fall_back(const std::string& why);
    Status arm_new_tracker(SeizedProcess& sp);
    void stop_old_agent();
    void note_collected();

    DumpContext& ctx_;
    pid_t pid_;
    Kind kind_;
    std::string parent_path_;
    PageHashes parent_hashes_;
    PageHashes hashes_;
    bool record_hashes_ = false;
    RangeSet parent_pages_;
    std::optional<TrackRecord> parent_record_;
    std::optional<DirtyPlan> plan_;
    std::string method_;                          // what this increment used
    std::string fallback_;                        // why exact tracking was not used, if so
    std::optional<TrackRecord> next_record_;      // tracking that continues after this set
    bool old_agent_stopped_ = false;
    bool collected_ = false;
    UniqueFd pending_uffd_;                       // started while stopped, armed by after_resume()
    std::unique_ptr<UffdWpTracker> new_tracker_;  // armed here, for a new agent
    LiveTracking* live_ = nullptr;
};

}  // namespace criu
