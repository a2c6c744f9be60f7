#include "restore/fd_table_share.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <set>

namespace criu {
namespace {

// Shared (not FUTEX_PRIVATE): the waiters are different processes.
void futex_wake(uint32_t* word) { ::syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0); }

// Waits until `pred(*word)` holds, for at most kShareWaitLimit.
template <class Pred>
bool futex_wait_until(uint32_t* word, Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + kShareWaitLimit;
    for (;;) {
        uint32_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (pred(v))
            return true;
        auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero())
            return false;
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        struct timespec ts {
            time_t(ns / 1000000000), long(ns % 1000000000)
        };
        ::syscall(SYS_futex, word, FUTEX_WAIT, v, &ts, nullptr, 0);  // EAGAIN/EINTR/ETIMEDOUT: look again
    }
}

}  // namespace

Expected<SharedFdTables> SharedFdTables::create(size_t processes, size_t max_slots) {
    size_t bytes = processes * (2 * sizeof(uint32_t) + max_slots * sizeof(int32_t));
    bytes = (bytes + 4095) & ~size_t(4095);
    void* area = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return fail_errno("mapping {} bytes for the processes that share fd tables", bytes);
    return SharedFdTables(area, bytes, processes, max_slots);
}

SharedFdTables::SharedFdTables(SharedFdTables&& o) noexcept
    : area_(o.area_), bytes_(o.bytes_), processes_(o.processes_), max_slots_(o.max_slots_) {
    o.area_ = nullptr;
}

SharedFdTables::~SharedFdTables() {
    if (area_)
        ::munmap(area_, bytes_);
}

uint32_t* SharedFdTables::ready(size_t i) const { return static_cast<uint32_t*>(area_) + i; }
uint32_t* SharedFdTables::go(size_t i) const { return static_cast<uint32_t*>(area_) + processes_ + i; }
int32_t* SharedFdTables::slots(size_t i) const {
    return reinterpret_cast<int32_t*>(static_cast<uint32_t*>(area_) + 2 * processes_) + i * max_slots_;
}

Expected<std::vector<int>> SharedFdTables::user_wait(size_t self, size_t owner, size_t n) const {
    if (self >= processes_ || owner >= processes_ || n > max_slots_)
        return failf(EINVAL, "fd table share: process {} of the table of {} ({} service fds) is out of range", self,
                     owner, n);
    __atomic_add_fetch(ready(owner), 1, __ATOMIC_RELEASE);
    futex_wake(ready(owner));
    if (!futex_wait_until(go(owner), [](uint32_t v) { return v != 0; }))
        return failf(ETIMEDOUT, "the owner of the shared fd table did not install it within {} s",
                     kShareWaitLimit.count());
    const int32_t* s = slots(self);
    return std::vector<int>(s, s + n);
}

Status SharedFdTables::owner_wait_ready(size_t owner, size_t users) const {
    if (!futex_wait_until(ready(owner), [users](uint32_t v) { return v >= users; }))
        return failf(ETIMEDOUT, "{} of the {} processes sharing the fd table were not ready within {} s",
                     users - __atomic_load_n(ready(owner), __ATOMIC_ACQUIRE), users, kShareWaitLimit.count());
    return {};
}

void SharedFdTables::owner_publish(size_t user, const std::vector<int>& fds) const {
    int32_t* s = slots(user);
    for (size_t i = 0; i < fds.size() && i < max_slots_; ++i)
        s[i] = fds[i];
}

void SharedFdTables::owner_go(size_t owner) const {
    __atomic_store_n(go(owner), 1, __ATOMIC_RELEASE);
    futex_wake(go(owner));
}

Expected<std::vector<std::vector<int>>> move_service_fds(const std::vector<const std::vector<int>*>& lists, int min_fd,
                                                         int& report_fd) {
    std::vector<std::vector<int>> out;
    std::set<int> old;
    int new_report = report_fd;
    for (size_t l = 0; l < lists.size(); ++l) {
        // Within one list a number used twice gets one copy (as the blob's slots expect).
        std::map<int, int> moved;
        std::vector<int> mine;
        for (int fd : *lists[l]) {
            auto it = moved.find(fd);
            if (it == moved.end()) {
                int nfd = ::fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
                if (nfd < 0)
                    return fail_errno("moving service fd {} above fd {}", fd, min_fd);
                it = moved.emplace(fd, nfd).first;
                old.insert(fd);
            }
            mine.push_back(it->second);
        }
        if (l == 0)
            if (auto it = moved.find(report_fd); it != moved.end())
                new_report = it->second;
        out.push_back(std::move(mine));
    }
    for (int fd : old)
        ::close(fd);
    report_fd = new_report;
    return out;
}

}  // namespace criu
