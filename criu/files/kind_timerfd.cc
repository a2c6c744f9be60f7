// timerfd: clock, pending expirations ("ticks"), settime flags, time left and interval, all
// from fdinfo (KERNEL-NOTES section 2), O_NONBLOCK from the open flags.
//
// fdinfo shows the time LEFT (it_value), even for a TFD_TIMER_ABSTIME timer. What restore
// does with it:
// - relative timers, and absolute timers on CLOCK_MONOTONIC / CLOCK_BOOTTIME (whose origin is
//   per boot, meaningless on another host or after a reboot): the time left is restarted at
//   restore, so the time the process spent dumped does not count (the process was frozen);
//   absolute ones stay absolute (armed at "now + time left" with TFD_TIMER_ABSTIME).
// - absolute timers on CLOCK_REALTIME / CLOCK_REALTIME_ALARM: the wall-clock deadline is kept
//   (computed at dump time as now + time left, within microseconds), so "wake me at 12:00"
//   still fires at 12:00, and at once (with the periods missed counted) if 12:00 has passed.
// Pending expirations are put back with TFD_IOC_SET_TICKS (needs CONFIG_CHECKPOINT_RESTORE).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <limits>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// linux/timerfd.h; not included because it clashes with glibc's <sys/timerfd.h>.
constexpr unsigned long kTfdIocSetTicks = _IOW('T', 0, uint64_t);
constexpr uint32_t kSettimeFlags = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET;
constexpr uint32_t kNsecPerSec = 1000000000;
// ticks is read() by the process as a u64 it may do signed arithmetic on; a 1 ns timer would
// need 292 years to pass this.
constexpr uint64_t kMaxTicks = uint64_t(std::numeric_limits<int64_t>::max());

bool clock_ok(int32_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_MONOTONIC || id == CLOCK_BOOTTIME || id == CLOCK_REALTIME_ALARM ||
           id == CLOCK_BOOTTIME_ALARM;
}

bool wall_clock(int32_t id) { return id == CLOCK_REALTIME || id == CLOCK_REALTIME_ALARM; }

// "(2, 999992614)"
std::optional<timespec> parse_pair(std::string_view s) {
    if (!s.starts_with('(') || !s.ends_with(')'))
        return std::nullopt;
    s = s.substr(1, s.size() - 2);
    size_t comma = s.find(", ");
    if (comma == std::string_view::npos)
        return std::nullopt;
    auto sec = parse_number<uint64_t>(s.substr(0, comma));
    auto nsec = parse_number<uint32_t>(s.substr(comma + 2));
    if (!sec || !nsec || *sec > uint64_t(std::numeric_limits<time_t>::max()) || *nsec >= kNsecPerSec)
        return std::nullopt;
    return timespec{static_cast<time_t>(*sec), static_cast<long>(*nsec)};
}

bool is_zero(const timespec& t) { return t.tv_sec == 0 && t.tv_nsec == 0; }

timespec add(timespec a, const timespec& b) {
    a.tv_sec += b.tv_sec;
    a.tv_nsec += b.tv_nsec;
    if (a.tv_nsec >= long(kNsecPerSec)) {
        a.tv_nsec -= kNsecPerSec;
        a.tv_sec++;
    }
    return a;
}

struct TimerState {
    int32_t clockid;
    uint64_t ticks;
    uint32_t settime_flags;
    timespec value, interval;
};

Expected<TimerState> parse_timerfd(const FdView& v, std::string_view text) {
    TimerState t{};
    std::string_view clk = fdinfo_field(text, "clockid"), ticks = fdinfo_field(text, "ticks"),
                     fl = fdinfo_field(text, "settime flags"), val = fdinfo_field(text, "it_value"),
                     intv = fdinfo_field(text, "it_interval");
    auto c = parse_number<int32_t>(clk);
    auto n = parse_number<uint64_t>(ticks);
    auto f = parse_number<uint32_t>(fl, 8);  // printed as 0%o
    auto tv = parse_pair(val), ti = parse_pair(intv);
    if (!c || !n || !f || !tv || !ti)
        return failf(EINVAL, "{}: cannot parse timerfd fdinfo (clockid \"{}\", ticks \"{}\", settime flags \"{}\", "
                             "it_value \"{}\", it_interval \"{}\")", v.where(), clk, ticks, fl, val, intv);
    t.clockid = *c;
    t.ticks = *n;
    t.settime_flags = *f;
    t.value = *tv;
    t.interval = *ti;
    return t;
}

Status dump_timerfd(KindDumpContext& c, const FdView& v, images::FileEntry& out) {
    TimerState t{};
    timespec now{};
    // A periodic timer that expired is not re-armed until someone asks (fs/timerfd.c): fdinfo
    // then shows 0 time left and one tick, however many periods have passed. timerfd_gettime()
    // on the shared description folds the missed periods into ticks and re-arms it; it
    // consumes nothing. The timer may expire again between that and fdinfo: then ask again.
    for (int attempt = 0; attempt < 5; ++attempt) {
        itimerspec cur;
        if (timerfd_gettime(v.stolen.get(), &cur) != 0)
            return fail_errno("{}: timerfd_gettime", v.where());
        std::string text = TRY_CTX(read_fdinfo(v.pid, v.fd), "{}", v.where());
        t = TRY(parse_timerfd(v, text));
        if (!clock_ok(t.clockid))
            return failf(ENOTSUP, "{}: timerfd on clock {} (not supported)", v.where(), t.clockid);
        if (clock_gettime(t.clockid, &now) != 0)
            return fail_errno("{}: clock_gettime({})", v.where(), t.clockid);
        if (!is_zero(t.value) || is_zero(t.interval))
            break;
    }
    auto* tf = out.mutable_timerfd();
    tf->set_flags(description_flags(v));
    tf->set_clockid(t.clockid);
    tf->set_ticks(t.ticks);
    tf->set_settime_flags(t.settime_flags);
    tf->set_value_sec(static_cast<uint64_t>(t.value.tv_sec));
    tf->set_value_nsec(static_cast<uint32_t>(t.value.tv_nsec));
    tf->set_interval_sec(static_cast<uint64_t>(t.interval.tv_sec));
    tf->set_interval_nsec(static_cast<uint32_t>(t.interval.tv_nsec));
    bool armed = !is_zero(t.value) || !is_zero(t.interval);
    if (armed && (t.settime_flags & TFD_TIMER_ABSTIME) && wall_clock(t.clockid)) {
        timespec deadline = add(now, t.value);
        tf->set_has_deadline(true);
        tf->set_deadline_sec(deadline.tv_sec);
        tf->set_deadline_nsec(static_cast<uint32_t>(deadline.tv_nsec));
    }
    c.log.debug("files", "{}: timerfd clock {} ticks {} left {}.{:09} interval {}.{:09} flags {:#o}", v.where(),
                t.clockid, t.ticks, t.value.tv_sec, t.value.tv_nsec, t.interval.tv_sec, t.interval.tv_nsec,
                t.settime_flags);
    return {};
}

Status validate_timerfd(const images::FileEntry& e) {
    if (!e.has_timerfd())
        return fail(EINVAL, "timerfd entry without TimerfdFile data");
    const auto& t = e.timerfd();
    TRY_VOID_CTX(validate_anon_flags(t.flags(), O_RDWR), "timerfd");
    if (!clock_ok(t.clockid()))
        return failf(EINVAL, "timerfd clock id {} is not one timerfd_create() accepts", t.clockid());
    if (t.settime_flags() & ~kSettimeFlags)
        return failf(EINVAL, "timerfd settime flags {:#o} have unknown bits", t.settime_flags());
    constexpr uint64_t max_sec = uint64_t(std::numeric_limits<time_t>::max());
    if (t.value_sec() > max_sec || t.interval_sec() > max_sec || t.value_nsec() >= kNsecPerSec ||
        t.interval_nsec() >= kNsecPerSec)
        return failf(EINVAL, "timerfd time left {}.{} or interval {}.{} is not a valid time", t.value_sec(),
                     t.value_nsec(), t.interval_sec(), t.interval_nsec());
    if (t.ticks() > kMaxTicks)
        return failf(EINVAL, "timerfd with {} pending expirations: more than any timer can have made", t.ticks());
    if (t.has_deadline()) {
        if (!(t.settime_flags() & TFD_TIMER_ABSTIME) || !wall_clock(t.clockid()))
            return failf(EINVAL, "timerfd deadline on clock {} with settime flags {:#o}: only absolute wall-clock "
                                 "timers have one", t.clockid(), t.settime_flags());
        if (t.deadline_sec() < 0 || t.deadline_nsec() >= kNsecPerSec)
            return failf(EINVAL, "timerfd deadline {}.{} is not a valid time", t.deadline_sec(), t.deadline_nsec());
    }
    return {};
}

Expected<UniqueFd> open_timerfd(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& t = e.timerfd();
    // Non-blocking while we set it up (see the read below); the dumped flags come back last.
    UniqueFd fd(timerfd_create(t.clockid(), TFD_CLOEXEC | TFD_NONBLOCK));
    if (!fd)
        return fail_errno("timerfd_create on clock {}", t.clockid());
    itimerspec its{};
    its.it_interval = {static_cast<time_t>(t.interval_sec()), static_cast<long>(t.interval_nsec())};
    its.it_value = {static_cast<time_t>(t.value_sec()), static_cast<long>(t.value_nsec())};
    // An expired periodic timer caught between two checks at dump shows 0 left: it is due now.
    // (0, 0) would disarm it.
    if (is_zero(its.it_value) && !is_zero(its.it_interval))
        its.it_value.tv_nsec = 1;
    if (t.has_deadline()) {
        its.it_value = {static_cast<time_t>(t.deadline_sec()), static_cast<long>(t.deadline_nsec())};
    } else if ((t.settime_flags() & TFD_TIMER_ABSTIME) && !is_zero(its.it_value)) {
        timespec now;
        if (clock_gettime(t.clockid(), &now) != 0)
            return fail_errno("clock_gettime({})", t.clockid());
        its.it_value = add(now, its.it_value);
    }
    // Called for a disarmed timer too: it also puts back the settime flags fdinfo shows.
    if (timerfd_settime(fd.get(), static_cast<int>(t.settime_flags()), &its, nullptr) != 0)
        return fail_errno("timerfd_settime (flags {:#o})", t.settime_flags());

    // settime zeroes the ticks, so they go in after it. A wall-clock deadline already passed
    // fired during settime: read those expirations and add them, since SET_TICKS replaces.
    uint64_t fresh = 0;
    if (read(fd.get(), &fresh, sizeof fresh) != static_cast<ssize_t>(sizeof fresh)) {
        if (errno != EAGAIN)
            return fail_errno("reading the expirations of the new timerfd");
        fresh = 0;
    }
    uint64_t ticks = t.ticks() + fresh;
    if (ticks != 0 && ioctl(fd.get(), kTfdIocSetTicks, &ticks) != 0) {
        if (errno == ENOTTY)
            return fail(ENOTTY, "this kernel has no TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE is off): "
                                "pending timerfd expirations cannot be restored");
        return fail_errno("TFD_IOC_SET_TICKS {}", ticks);
    }
    if (fresh)
        c.log->info("files", "timerfd: the deadline passed while dumped: {} expirations added to the {} pending",
                    fresh, t.ticks());
    TRY_VOID_CTX(set_status_flags(fd.get(), t.flags()), "timerfd");
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kTimerfdKind{
    .name = "timerfd",
    .kind = images::FD_TIMERFD,
    .match = [](const FdView& v) { return v.link == "anon_inode:[timerfd]"; },
    .dump = dump_timerfd,
    .validate = validate_timerfd,
    .open = open_timerfd,
};

}  // namespace criu
