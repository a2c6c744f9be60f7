#include "criu/ipc/sysv_semadj.h"

#include <linux/kcmp.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "criu/ipc/sysv_ipc.h"

namespace criu {
namespace {

constexpr int kSemMax = 32767;        // SEMVMX and SEMAEM: the top of a value and of semadj
constexpr int kAdjMin = -kSemMax - 1;  // the bottom of semadj
constexpr int kMaxEntries = 1 << 20;  // more adjustments than any namespace's semaphores
constexpr int kChunk = 16384;         // restore: one semop moves semadj by at most this much

struct Op {
    int delta;
    bool undo;
};

std::vector<sembuf> to_sembufs(unsigned short num, const std::vector<Op>& ops) {
    std::vector<sembuf> out;
    for (const Op& o : ops)
        out.push_back({num, static_cast<short>(o.delta), static_cast<short>(IPC_NOWAIT | (o.undo ? SEM_UNDO : 0))});
    return out;
}

class Prober {
public:
    Prober(pid_t pid, RemoteSyscalls& rs) : pid_(pid), rs_(rs) {}

    // semctl in the process; the raw result (-errno on failure).
    Expected<long> semctl(int id, int num, int cmd, void* buf, size_t len) {
        if (len)
            TRY_VOID(rs_.write_scratch(0, buf, len));
        long r = TRY(rs_.syscall(SYS_semctl, id, num, cmd, len ? rs_.scratch().addr() : 0));
        if (len && r >= 0)
            TRY_VOID(rs_.read_scratch(0, buf, len));
        return r;
    }

    // Whether semadj of semaphore `num` of set `id` (value `val`) is at least `t`, for t in
    // [-32767, 32767]; see sysv_semadj.h. Changes nothing: the last operation always fails.
    Expected<bool> at_least(int id, unsigned short num, int val, int t) {
        std::vector<Op> ops;
        bool erange_means;
        int cur;
        if (t >= 1) {
            // semadj >= t  <=>  semadj + s > 32767 with s = 32768 - t in [1, 32767]: a decrement
            // by s with SEM_UNDO overflows semadj; the value is first raised so it can go down by s.
            int s = kSemMax + 1 - t;
            if (val < kSemMax)
                ops.push_back({kSemMax - val, false});
            ops.push_back({-s, true});
            cur = kSemMax - s;
            erange_means = true;
        } else {
            // semadj < t  <=>  semadj - s < -32768 with s = t + 32768 in [1, 32768]: increments
            // summing to s with SEM_UNDO underflow semadj; the value starts at 0 to have room.
            int s = t - kAdjMin;
            if (val > 0)
                ops.push_back({-val, false});
            if (s <= kSemMax) {
                ops.push_back({s, true});
                cur = s;
            } else {
                ops.push_back({1, true});
                ops.push_back({-1, false});
                ops.push_back({s - 1, true});
                cur = s - 1;
            }
            erange_means = false;
        }
        ops.push_back({-(cur + 1), false});  // below 0: EAGAIN, and every operation is taken back
        std::vector<sembuf> sb = to_sembufs(num, ops);
        TRY_VOID(rs_.write_scratch(0, sb.data(), sb.size() * sizeof(sembuf)));
        long r = TRY(rs_.syscall(SYS_semop, id, rs_.scratch().addr(), sb.size()));
        if (r == -ERANGE)
            return erange_means;
        if (r == -EAGAIN)
            return !erange_means;
        if (r == 0)
            return failf(EIO, "pid {}: semaphore set {} number {}: a probe of its undo adjustment was performed "
                              "instead of failing (the value was changed by something outside the frozen tree?)",
                         pid_, id, num);
        return failf(static_cast<int>(-r), "pid {}: semaphore set {} number {}: semop probing the undo adjustment: {}",
                     pid_, id, num, std::strerror(static_cast<int>(-r)));
    }

    Expected<int> semadj(int id, unsigned short num, int val) {
        bool pos = TRY(at_least(id, num, val, 1));
        if (!pos && TRY(at_least(id, num, val, 0)))
            return 0;
        // The largest t with semadj >= t, in [1, 32767] or [-32768, -1].
        int lo = pos ? 1 : kAdjMin, hi = pos ? kSemMax : -1;
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (TRY(at_least(id, num, val, mid)))
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

private:
    pid_t pid_;
    RemoteSyscalls& rs_;
};

// One semop in this process that moves semadj of (id, num) by `c` (|c| <= kChunk) and leaves
// the value: the SEM_UNDO operation and its counterpart without it, in the order the value allows.
Status shift_semadj(int id, unsigned short num, int c) {
    // semop's SEM_UNDO records the opposite of the operation: -c moves semadj by +c.
    std::vector<Op> a{{c, false}, {-c, true}}, b{{-c, true}, {c, false}};
    for (const auto* ops : {&a, &b}) {
        std::vector<sembuf> sb = to_sembufs(num, *ops);
        if (::semop(id, sb.data(), sb.size()) == 0)
            return {};
        if (errno != EAGAIN && errno != ERANGE)
            break;
    }
    return fail_errno("semaphore set {} number {}: setting the undo adjustment ({:+})", id, num, c);
}

}  // namespace

Status dump_semadj(pid_t pid, RemoteSyscalls& rs, images::TaskCore& core, Log& log) {
    // Equal undo lists (0) means none: criu never made one.
    long k = syscall(SYS_kcmp, pid, getpid(), KCMP_SYSVSEM, 0, 0);
    if (k < 0)
        return fail_errno("pid {}: kcmp KCMP_SYSVSEM", pid);
    if (k == 0)
        return {};
    if (!TRY(has_own_ipc_ns(pid))) {
        log.warn("ipc", "pid {} has semaphore undo adjustments (SEM_UNDO) on semaphores of criu's IPC namespace, "
                        "which are not dumped: they are lost",
                 pid);
        return {};
    }
    Prober p(pid, rs);
    seminfo info{};
    long maxidx = TRY(p.semctl(0, 0, SEM_INFO, &info, sizeof info));
    if (maxidx < 0)
        return failf(static_cast<int>(-maxidx), "pid {}: semctl SEM_INFO: {}", pid,
                     std::strerror(static_cast<int>(-maxidx)));
    int sets = 0, probed = 0;
    for (long idx = 0; idx <= maxidx; ++idx) {
        semid_ds ds{};
        long id = TRY(p.semctl(static_cast<int>(idx), 0, SEM_STAT_ANY, &ds, sizeof ds));
        if (id == -EINVAL)
            continue;  // a free index
        if (id < 0)
            return failf(static_cast<int>(-id), "pid {}: semctl SEM_STAT_ANY {}: {}", pid, idx,
                         std::strerror(static_cast<int>(-id)));
        ++sets;
        for (unsigned short num = 0; num < ds.sem_nsems; ++num) {
            long val = TRY(p.semctl(static_cast<int>(id), num, GETVAL, nullptr, 0));
            if (val == -EACCES) {
                // Neither readable nor (then) alterable by the process: it cannot have done SEM_UNDO
                // operations on it unless the permissions changed since.
                log.warn("ipc", "pid {}: semaphore set {} is not readable by the process: its undo adjustments, if "
                                "any, are not dumped",
                         pid, id);
                break;
            }
            if (val < 0 || val > kSemMax)
                return failf(val < 0 ? static_cast<int>(-val) : EIO, "pid {}: semaphore set {} number {}: GETVAL "
                                                                     "gave {}",
                             pid, id, num, val);
            int adj = TRY(p.semadj(static_cast<int>(id), num, static_cast<int>(val)));
            ++probed;
            if (adj == 0)
                continue;
            auto* e = core.add_sem_undo();
            e->set_semid(static_cast<int>(id));
            e->set_semnum(num);
            e->set_adj(adj);
            log.debug("ipc", "pid {}: semaphore set {} number {} (value {}): undo adjustment {:+}", pid, id, num, val,
                      adj);
        }
    }
    log.info("ipc", "pid {}: {} semaphore undo adjustment(s) found ({} semaphores of {} sets probed)", pid,
             core.sem_undo_size(), probed, sets);
    return {};
}

Status validate_semadj(const images::TaskCore& core) {
    if (core.sem_undo_size() > kMaxEntries)
        return failf(EINVAL, "pid {}: {} semaphore undo adjustments (at most {})", core.pid(), core.sem_undo_size(),
                     kMaxEntries);
    std::set<std::pair<int, uint32_t>> seen;
    for (const auto& e : core.sem_undo()) {
        if (e.semid() < 0 || e.semnum() > 0xffff)
            return failf(EINVAL, "pid {}: semaphore undo adjustment for set {} number {}: no such semaphore",
                         core.pid(), e.semid(), e.semnum());
        if (e.adj() < kAdjMin || e.adj() > kSemMax || e.adj() == 0)
            return failf(EINVAL, "pid {}: semaphore set {} number {}: undo adjustment {} (not zero, in [{}, {}])",
                         core.pid(), e.semid(), e.semnum(), e.adj(), kAdjMin, kSemMax);
        if (!seen.insert({e.semid(), e.semnum()}).second)
            return failf(EINVAL, "pid {}: semaphore set {} number {}: two undo adjustments", core.pid(), e.semid(),
                         e.semnum());
    }
    return {};
}

Status restore_semadj(const images::TaskCore& core) {
    TRY_VOID(validate_semadj(core));
    for (const auto& e : core.sem_undo()) {
        int left = e.adj();
        while (left != 0) {
            int c = left > kChunk ? kChunk : (left < -kChunk ? -kChunk : left);
            TRY_VOID_CTX(shift_semadj(e.semid(), static_cast<unsigned short>(e.semnum()), c), "pid {}", core.pid());
            left -= c;
        }
    }
    return {};
}

}  // namespace criu
