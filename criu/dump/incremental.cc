#include "criu/dump/incremental.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include "images/page_reader.h"
#include "migrate/track/soft_dirty_tracker.h"
#include "migrate/track/track_agent.h"

namespace criu {

namespace {

constexpr size_t kMaxRecordSize = 4096;

Expected<std::optional<std::string>> read_small_file(const ImageDir& dir, const std::string& name) {
    UniqueFd fd(openat(dir.fd(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT)
            return std::optional<std::string>();
        return fail_errno("cannot open {}", dir.file_path(name));
    }
    std::string text(kMaxRecordSize + 1, '\0');
    ssize_t n = pread(fd.get(), text.data(), text.size(), 0);
    if (n < 0)
        return fail_errno("cannot read {}", dir.file_path(name));
    if (size_t(n) > kMaxRecordSize)
        return failf(EFBIG, "{} is larger than {} bytes", dir.file_path(name), kMaxRecordSize);
    text.resize(size_t(n));
    return std::optional<std::string>(std::move(text));
}

Status write_small_file(const ImageDir& dir, const std::string& name, const std::string& text) {
    UniqueFd fd(openat(dir.fd(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd || write(fd.get(), text.data(), text.size()) != ssize_t(text.size()))
        return fail_errno("cannot write {}", dir.file_path(name));
    return {};
}

}  // namespace

std::string TrackRecord::file_name(pid_t pid) { return fmt::format("track-{}.txt", pid); }

std::string TrackRecord::encode() const {
    return fmt::format("method {}\nstart_time {}\nsession {}\ngeneration {}\n", method, start_time, session,
                       generation);
}

Expected<TrackRecord> TrackRecord::decode(std::string_view text, std::string_view what) {
    TrackRecord r;
    bool seen[4] = {};
    size_t line_no = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        ++line_no;
        if (line.empty())
            continue;
        size_t sp = line.find(' ');
        if (sp == std::string_view::npos)
            return failf(EBADMSG, "{}: line {} has no value", what, line_no);
        std::string_view key = line.substr(0, sp), val = line.substr(sp + 1);
        if (key == "method") {
            if (val != "uffd-wp" && val != "soft-dirty")
                return failf(EBADMSG, "{}: unknown method '{}'", what, val);
            r.method = std::string(val);
            seen[0] = true;
            continue;
        }
        uint64_t* dst = key == "start_time" ? &r.start_time
                        : key == "session"  ? &r.session
                        : key == "generation" ? &r.generation
                                              : nullptr;
        if (!dst)
            return failf(EBADMSG, "{}: unknown key '{}' on line {}", what, key, line_no);
        auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), *dst);
        if (ec != std::errc() || p != val.data() + val.size())
            return failf(EBADMSG, "{}: '{}' is not a number on line {}", what, val, line_no);
        seen[key == "start_time" ? 1 : key == "session" ? 2 : 3] = true;
    }
    if (!seen[0] || !seen[1] || !seen[2] || !seen[3])
        return failf(EBADMSG, "{}: incomplete (needs method, start_time, session, generation)", what);
    return r;
}

Expected<std::unique_ptr<IncrementalDump>> IncrementalDump::prepare(DumpContext& ctx, pid_t pid, Kind kind,
                                                                   LiveTracking* live) {
    std::unique_ptr<IncrementalDump> inc(new IncrementalDump(ctx, pid, kind));
    inc->live_ = live;
    const Options& opts = ctx.opts;
    // A pre-dump exists to be followed by a dump: it always records page hashes, the fallback
    // for when exact tracking is lost. So does a dump that leaves the process running to be
    // tracked on; one that kills it has no next increment (hashing every page it writes, and
    // carrying the parent's hashes over for the rest, would only lengthen the freeze).
    inc->record_hashes_ = ctx.page_hashes && (kind == Kind::PreDump || (opts.track_mem && opts.leave_running));
    if (opts.prev_images_dir.empty()) {
        // A new chain arms a new tracker, and an older agent (another chain) must go first: two
        // uffds cannot write-protect the same VMAs. Its uffd's release unregisters every VMA
        // (~0.2 s for 1 GiB under load), so that happens here, before the process is stopped.
        if (inc->keeps_tracking())
            inc->stop_old_agent();
        return inc;
    }
    inc->method_ = "hash";
    std::string path =
        opts.prev_images_dir[0] == '/' ? opts.prev_images_dir : ctx.dir.path() + "/" + opts.prev_images_dir;
    inc->parent_path_ = path;
    ImageDir pd = TRY_CTX(ImageDir::open(path), "parent image set {}", path);
    TRY_CTX(pd.read_inventory(), "parent image set {}", path);
    if (!TRY(pd.has(ImageType::Pagemap, pid))) {
        inc->fall_back(fmt::format("parent image set {} has no pages of pid {}", path, pid));
        return inc;
    }
    PageReader pr = TRY_CTX(PageReader::open(pd, pid, true), "parent image set {}", path);
    for (const PageEntry& e : pr.entries())
        inc->parent_pages_.add(e.vaddr, e.end());
    auto h = PageHashes::load(pd, pid);
    if (!h)
        ctx.log.warn("dump", "ignoring the parent's page hashes: {}", h.error().str());
    else
        inc->parent_hashes_ = std::move(*h);
    std::string rec_name = TrackRecord::file_name(pid);
    auto text = read_small_file(pd, rec_name);
    if (live) {
        // The tracker runs here; the parent's own record does not matter.
    } else if (!text) {
        inc->fall_back(text.error().str());
    } else if (!*text) {
        inc->fall_back(fmt::format("parent image set {} was not taken with dirty tracking", path));
    } else {
        auto rec = TrackRecord::decode(**text, pd.file_path(rec_name));
        if (!rec)
            inc->fall_back(rec.error().str());
        else
            inc->parent_record_ = std::move(*rec);
    }
    return inc;
}

bool IncrementalDump::keeps_tracking() const {
    return kind_ == Kind::PreDump || (ctx_.opts.leave_running && ctx_.opts.track_mem);
}

void IncrementalDump::fall_back(const std::string& why) {
    ctx_.log.warn("dump", "pid {}: no exact dirty tracking since the parent ({}): every page is read and compared "
                          "with the parent's page hashes",
                  pid_, why);
    fallback_ = why;
    method_ = "hash";
}

void IncrementalDump::stop_old_agent() {
    if (old_agent_stopped_)
        return;
    old_agent_stopped_ = true;
    if (auto st = agent_stop(pid_); !st)
        ctx_.log.warn("dump", "pid {}: could not stop its old tracking agent: {}", pid_, st.error().str());
}

Status IncrementalDump::arm_new_tracker(SeizedProcess& sp) {
    // Two uffds cannot write-protect the same VMAs: an older agent (another chain) goes first
    // (done before the seize when this was known then; an agent that did not answer is gone or
    // stale).
    stop_old_agent();
    switch (ctx_.features.dirty_track_method()) {
    case kfc::DirtyTrackMethod::UffdWpAsync: {
        // Only the userfaultfd() call needs the process stopped; a pre-dump arms the
        // write-protection after resuming it (after_resume), a dump right away.
        auto uffd = UffdWpTracker::steal_userfaultfd(sp, ctx_.log);
        if (!uffd) {
            ctx_.log.warn("dump", "pid {}: cannot start uffd-wp tracking ({}): the next dump compares page hashes",
                          pid_, uffd.error().str());
            return {};
        }
        pending_uffd_ = std::move(*uffd);
        if (kind_ != Kind::PreDump)
            after_resume();
        return {};
    }
    case kfc::DirtyTrackMethod::SoftDirty: {
        auto t = SoftDirtyTracker::create(pid_, ctx_.log);
        if (!t) {
            ctx_.log.warn("dump", "pid {}: cannot clear soft-dirty bits ({}): the next dump compares page hashes",
                          pid_, t.error().str());
            return {};
        }
        next_record_ = TrackRecord{"soft-dirty", (*t)->start_time(), 0, 0};
        return {};
    }
    case kfc::DirtyTrackMethod::None:
        break;
    }
    ctx_.log.info("dump", "pid {}: no exact dirty tracking on this kernel: the next dump compares page hashes", pid_);
    return {};
}

void IncrementalDump::after_resume() {
    if (!pending_uffd_)
        return;
    auto t = UffdWpTracker::create(pid_, std::move(pending_uffd_), ctx_.log);
    if (!t) {
        ctx_.log.warn("dump", "pid {}: cannot arm uffd-wp tracking ({}): the next dump compares page hashes", pid_,
                      t.error().str());
        return;
    }
    new_tracker_ = std::move(*t);
}

bool IncrementalDump::collect_while_running() {
    if (live_ || !parent_record_ || parent_record_->method != "uffd-wp")
        return false;
    const TrackRecord rec = *parent_record_;
    parent_record_.reset();  // asked once: before_pages() does not ask again
    auto now = read_start_time(pid_);
    if (!now) {
        fall_back(now.error().str());
        return false;
    }
    if (*now != rec.start_time) {
        fall_back(fmt::format("pid {} is not the process the parent tracked (start time {} instead of {})", pid_, *now,
                              rec.start_time));
        return false;
    }
    auto got = agent_collect(pid_, rec.session, rec.generation, *now);
    if (!got) {
        fall_back(fmt::format("the tracking agent did not answer: {}", got.error().str()));
        return false;
    }
    plan_ = DirtyPlan{std::move(got->dirty.written), parent_pages_, true};
    method_ = "uffd-wp";
    if (keeps_tracking())
        next_record_ = TrackRecord{"uffd-wp", *now, got->state.session, got->state.generation};
    note_collected();
    return true;
}

void IncrementalDump::note_collected() {
    collected_ = true;
    ctx_.stats.set_pages_dirty(ctx_.stats.pages_dirty() + plan_->dirty.pages());
    ctx_.log.info("dump", "pid {}: {} pages written since the parent ({})", pid_, plan_->dirty.pages(), method_);
}

Status IncrementalDump::before_pages(SeizedProcess& sp) {
    if (collected_)
        return {};
    bool collected = false;
    if (live_ && !parent_path_.empty()) {
        auto d = live_->tracker->collect();
        if (!d)
            return std::unexpected(std::move(d.error()));  // no increment can be trusted now
        d->written.add(live_->carry);
        plan_ = DirtyPlan{std::move(d->written), parent_pages_, live_->tracker->method() == "uffd-wp"};
        method_ = std::string(live_->tracker->method());
        collected = true;
    } else if (parent_record_) {
        const TrackRecord& rec = *parent_record_;
        auto now = read_start_time(pid_);
        if (!now) {
            fall_back(now.error().str());
        } else if (*now != rec.start_time) {
            fall_back(fmt::format("pid {} is not the process the parent tracked (start time {} instead of {})", pid_,
                                  *now, rec.start_time));
        } else if (rec.method == "uffd-wp") {
            auto got = agent_collect(pid_, rec.session, rec.generation, *now);
            if (!got) {
                fall_back(fmt::format("the tracking agent did not answer: {}", got.error().str()));
            } else {
                plan_ = DirtyPlan{std::move(got->dirty.written), parent_pages_, true};
                method_ = "uffd-wp";
                collected = true;
                if (keeps_tracking())
                    next_record_ = TrackRecord{"uffd-wp", *now, got->state.session, got->state.generation};
            }
        } else {
            auto t = SoftDirtyTracker::resume(pid_, *now, ctx_.log);
            auto d = t ? (*t)->collect() : Expected<DirtySet>(std::unexpected(std::move(t.error())));
            if (!d) {
                fall_back(d.error().str());
            } else {
                plan_ = DirtyPlan{std::move(d->written), parent_pages_};
                method_ = "soft-dirty";
                collected = true;
                if (keeps_tracking())
                    next_record_ = TrackRecord{"soft-dirty", *now, 0, 0};
            }
        }
    }
    if (collected) {
        note_collected();
    } else if (keeps_tracking()) {
        TRY_VOID(arm_new_tracker(sp));
    }
    return {};
}

void IncrementalDump::describe(images::Inventory& inv) {
    inv.set_dirty_tracking(method_);
    ctx_.stats.set_dirty_tracking(method_);
    ctx_.stats.set_tracking_fallback(fallback_);
    if (live_) {
        for (const auto& r : live_->rounds)
            *ctx_.stats.add_pre_copy_rounds() = r;
        ctx_.stats.set_iterations(uint32_t(live_->rounds.size() + 1));
        ctx_.stats.set_pre_copy_time_us(live_->pre_copy_time_us);
    }
}

Status IncrementalDump::finish() {
    if (record_hashes_)
        TRY_VOID(hashes_.save(ctx_.dir, pid_));
    if (new_tracker_) {
        uint64_t st = new_tracker_->start_time();
        AgentConfig cfg;
        cfg.idle_timeout_s = ctx_.opts.track_agent_timeout_s;
        cfg.log_path = fmt::format("{}/{}.log", cfg.dir, pid_);
        auto agent = spawn_track_agent(std::move(new_tracker_), cfg, ctx_.log);
        if (agent)
            next_record_ = TrackRecord{"uffd-wp", st, agent->session, agent->generation};
        else
            ctx_.log.warn("dump", "pid {}: {}: the next dump compares page hashes", pid_, agent.error().str());
    }
    if (next_record_)
        TRY_VOID(write_small_file(ctx_.dir, TrackRecord::file_name(pid_), next_record_->encode()));
    else if (method_ == "uffd-wp" && !keeps_tracking() && ctx_.opts.leave_running)
        (void)agent_stop(pid_);  // the process runs on, untracked, as it was before the pre-dumps
    return {};
}

}  // namespace criu
