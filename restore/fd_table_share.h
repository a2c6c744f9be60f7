// Processes restored into one fd table (dumped sharing it: clone(CLONE_FILES) without CLONE_VM).
//
// The table is dumped once, with its owner (the topmost process using it); every other user is
// forked by its parent with CLONE_FILES and installs nothing itself. The owner installs the
// dumped fds for all of them, so it must first know that no other user still works in the table
// (forking its own children opens and closes fds there), and every user's service fds (its
// blob's report and go pipes, page images: opened by criu, inherited at low numbers) must be
// moved above the dumped fds and survive the owner's clean-up, each user keeping its own copies
// since each blob closes its own. The handshake goes through a MAP_SHARED area criu maps before
// forking (no fd: the table is what is being rebuilt; the blob unmaps the area with the rest of
// criu's memory):
//   user:  after its own forks, ready[owner] += 1, then waits for go[owner] and reads its
//          service fds' new numbers;
//   owner: after its own forks, waits until ready[owner] == its number of users, moves every
//          user's service fds, installs the dumped fds, closes criu's leftovers, publishes the
//          new numbers, go[owner] = 1.
// A process that fails reports it on its report pipe and criu kills the tree; the waits also
// end by themselves after kShareWaitLimit.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "criu/core/error.h"

namespace criu {

inline constexpr std::chrono::seconds kShareWaitLimit{60};

class SharedFdTables {
public:
    // For a tree of `processes` processes, each with at most `max_slots` service fds.
    static Expected<SharedFdTables> create(size_t processes, size_t max_slots);
    SharedFdTables(SharedFdTables&& o) noexcept;
    SharedFdTables& operator=(SharedFdTables&&) = delete;
    ~SharedFdTables();

    // In the user `self` of the table of `owner`: tells the owner it is ready, waits for its
    // go and returns the `slots` service fds' numbers in the shared table, in slot order.
    Expected<std::vector<int>> user_wait(size_t self, size_t owner, size_t slots) const;
    // In the owner: waits until `users` users said they are ready.
    Status owner_wait_ready(size_t owner, size_t users) const;
    // In the owner: the new numbers of the service fds of `user`, then go for all its users.
    void owner_publish(size_t user, const std::vector<int>& fds) const;
    void owner_go(size_t owner) const;

private:
    SharedFdTables(void* area, size_t bytes, size_t processes, size_t max_slots)
        : area_(area), bytes_(bytes), processes_(processes), max_slots_(max_slots) {}
    uint32_t* ready(size_t i) const;
    uint32_t* go(size_t i) const;
    int32_t* slots(size_t i) const;

    void* area_ = nullptr;
    size_t bytes_ = 0;
    size_t processes_ = 0;
    size_t max_slots_ = 0;
};

// Moves each list of service fds above `min_fd` (F_DUPFD_CLOEXEC: never onto a chosen number),
// a separate copy per list (each blob closes its own fds), then closes the old numbers.
// `report_fd`, if found in the first list, is changed to its new number.
Expected<std::vector<std::vector<int>>> move_service_fds(const std::vector<const std::vector<int>*>& lists, int min_fd,
                                                         int& report_fd);

}  // namespace criu
