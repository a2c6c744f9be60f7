#include "migrate/track/dirty_tracker.h"

#include "criu/core/proc_parse.h"
#include "kernel-feature-check/features.h"
#include "migrate/track/hash_tracker.h"
#include "migrate/track/soft_dirty_tracker.h"
#include "migrate/track/uffd_tracker.h"

namespace criu {

std::string_view track_method_name(TrackMethod m) {
    switch (m) {
    case TrackMethod::Auto:
        return "auto";
    case TrackMethod::UffdWp:
        return "uffd-wp";
    case TrackMethod::SoftDirty:
        return "soft-dirty";
    case TrackMethod::Hash:
        return "hash";
    }
    return "?";
}

uint64_t parse_start_time(std::string_view line) {
    // The comm field may hold spaces and ')': fields are counted after the last ')'.
    size_t p = line.rfind(')');
    if (p == std::string_view::npos)
        return 0;
    std::string_view rest = line.substr(p + 1);
    int field = 2;  // the ')' closes field 2
    size_t i = 0;
    while (i < rest.size()) {
        while (i < rest.size() && rest[i] == ' ')
            ++i;
        size_t j = i;
        while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n')
            ++j;
        if (j == i)
            break;
        if (++field == 22) {
            uint64_t v = 0;
            for (size_t k = i; k < j; ++k) {
                if (rest[k] < '0' || rest[k] > '9')
                    return 0;
                v = v * 10 + uint64_t(rest[k] - '0');
            }
            return v;
        }
        i = j;
    }
    return 0;
}

Expected<uint64_t> read_start_time(pid_t pid) {
    std::string text = TRY(read_proc_file(fmt::format("/proc/{}/stat", pid)));
    uint64_t st = parse_start_time(text);
    if (!st)
        return failf(EPROTO, "pid {}: no start time in /proc/{}/stat", pid, pid);
    return st;
}

Expected<DirtyTracker::Pending> DirtyTracker::prepare(pid_t pid, SeizedProcess& sp, Log& log, TrackMethod method) {
    if (method == TrackMethod::Auto) {
        switch (kfc::KernelFeatures::detect().dirty_track_method()) {
        case kfc::DirtyTrackMethod::UffdWpAsync:
            method = TrackMethod::UffdWp;
            break;
        case kfc::DirtyTrackMethod::SoftDirty:
            method = TrackMethod::SoftDirty;
            break;
        case kfc::DirtyTrackMethod::None:
            method = TrackMethod::Hash;
            break;
        }
    }
    Pending p(pid, method, log);
    if (method == TrackMethod::UffdWp)
        p.uffd_ = TRY(UffdWpTracker::steal_userfaultfd(sp, log));
    return p;
}

Expected<std::unique_ptr<DirtyTracker>> DirtyTracker::Pending::arm() {
    switch (method_) {
    case TrackMethod::UffdWp:
        return TRY(UffdWpTracker::create(pid_, std::move(uffd_), *log_));
    case TrackMethod::SoftDirty:
        return TRY(SoftDirtyTracker::create(pid_, *log_));
    case TrackMethod::Hash:
    case TrackMethod::Auto:
        break;
    }
    return TRY(HashTracker::create(pid_, *log_));
}

Expected<std::unique_ptr<DirtyTracker>> DirtyTracker::start(pid_t pid, SeizedProcess& sp, Log& log,
                                                            TrackMethod method) {
    Pending p = TRY(prepare(pid, sp, log, method));
    return p.arm();
}

}  // namespace criu
