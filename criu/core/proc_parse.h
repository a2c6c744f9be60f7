// Parsers for the /proc files the dumper reads. Each format has a pure parser over text (unit
// tested with tricky samples: paths with spaces, " (deleted)", comm with parentheses) and a
// reader that opens /proc/PID/... and names the pid and file in every error.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "criu/core/error.h"

namespace criu {

// One line of /proc/PID/maps, or one block of /proc/PID/smaps.
struct MapsEntry {
    uint64_t start = 0;
    uint64_t end = 0;
    bool read = false;
    bool write = false;
    bool exec = false;
    bool shared = false;  // 's' in the fourth permission column, else 'p'
    uint64_t pgoff = 0;   // file offset in bytes
    uint32_t dev_major = 0;
    uint32_t dev_minor = 0;
    uint64_t ino = 0;
    // Backing path with the kernel's "\012" escape undone and without the " (deleted)" suffix;
    // pseudo paths such as "[heap]" are kept as they are; empty for anonymous memory.
    std::string path;
    bool deleted = false;
    // smaps only: the two-letter VmFlags ("rd", "gd", "dd", ...) and the kB counters by key.
    std::vector<std::string> vm_flags;
    std::map<std::string, uint64_t, std::less<>> kb;

    uint64_t size() const { return end - start; }
    bool has_flag(std::string_view f) const;
};

Expected<MapsEntry> parse_maps_line(std::string_view line);
Expected<std::vector<MapsEntry>> parse_maps(std::string_view text);
Expected<std::vector<MapsEntry>> parse_smaps(std::string_view text);
Expected<std::vector<MapsEntry>> read_maps(pid_t pid);
Expected<std::vector<MapsEntry>> read_smaps(pid_t pid);

// /proc/PID/status (or /proc/PID/task/TID/status).
struct ProcStatus {
    std::string name;
    char state = '?';
    pid_t tgid = 0;
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t tracer_pid = 0;
    uint32_t uid[4] = {};  // real, effective, saved, fs
    uint32_t gid[4] = {};
    std::vector<uint32_t> groups;
    uint64_t sig_pnd = 0;  // per-thread pending
    uint64_t shd_pnd = 0;  // shared pending
    uint64_t sig_blk = 0;
    uint64_t sig_ign = 0;
    uint64_t sig_cgt = 0;
    uint64_t cap_inh = 0;
    uint64_t cap_prm = 0;
    uint64_t cap_eff = 0;
    uint64_t cap_bnd = 0;
    uint64_t cap_amb = 0;
    bool no_new_privs = false;
    int seccomp = 0;          // SECCOMP_MODE_*
    int seccomp_filters = 0;  // number of attached filters (5.9+)
    std::optional<uint32_t> umask;  // 4.7+
    int threads = 0;
    std::string x86_thread_features;  // "shstk wrss" when CET user shadow stacks are on
};

Expected<ProcStatus> parse_status(std::string_view text);
// tid == 0 reads the process-wide file.
Expected<ProcStatus> read_status(pid_t pid, pid_t tid = 0);

// /proc/PID/stat. Field numbers below are those of proc(5).
struct ProcStat {
    pid_t pid = 0;
    std::string comm;  // may contain spaces and parentheses
    char state = '?';
    pid_t ppid = 0;      // 4
    pid_t pgrp = 0;      // 5
    pid_t session = 0;   // 6
    int tty_nr = 0;      // 7
    uint64_t flags = 0;  // 9
    int64_t priority = 0;  // 18
    int64_t nice = 0;      // 19
    int64_t num_threads = 0;  // 20
    uint64_t start_code = 0;   // 26
    uint64_t end_code = 0;     // 27
    uint64_t start_stack = 0;  // 28
    int exit_signal = 0;       // 38
    uint32_t rt_priority = 0;  // 40
    uint32_t policy = 0;       // 41
    uint64_t start_data = 0;   // 45
    uint64_t end_data = 0;     // 46
    uint64_t start_brk = 0;    // 47
    uint64_t arg_start = 0;    // 48
    uint64_t arg_end = 0;      // 49
    uint64_t env_start = 0;    // 50
    uint64_t env_end = 0;      // 51
    int exit_code = 0;         // 52
};

Expected<ProcStat> parse_stat(std::string_view text);
Expected<ProcStat> read_stat(pid_t pid, pid_t tid = 0);

// /proc/PID/fdinfo/FD: the common keys, and every other line as key -> value where the key is
// the text before the first ':' (trimmed). Keys that repeat (epoll "tfd", inotify "inotify wd")
// keep all their values in file order.
struct FdInfo {
    uint64_t pos = 0;
    uint32_t flags = 0;  // octal in the file: O_* open flags plus O_CLOEXEC for the fd flag
    int mnt_id = 0;
    uint64_t ino = 0;
    std::multimap<std::string, std::string, std::less<>> extra;

    // The first value of `key`, if any.
    std::optional<std::string_view> get(std::string_view key) const;
};

Expected<FdInfo> parse_fdinfo(std::string_view text);
Expected<FdInfo> read_fdinfo(pid_t pid, int fd);

// One entry of /proc/PID/timers (POSIX timers; the file carries no times, see KERNEL-NOTES 2).
struct ProcTimer {
    int id = 0;
    int signo = 0;
    uint64_t sigval = 0;
    int notify = 0;          // SIGEV_SIGNAL / SIGEV_NONE / SIGEV_THREAD, | SIGEV_THREAD_ID for "tid"
    pid_t notify_pid = 0;    // the pid or tid after "pid." / "tid."
    int clock_id = 0;
};

Expected<std::vector<ProcTimer>> parse_timers(std::string_view text);
Expected<std::vector<ProcTimer>> read_timers(pid_t pid);

// TIDs in /proc/PID/task, ascending.
Expected<std::vector<pid_t>> list_tasks(pid_t pid);
// Children of one thread (/proc/PID/task/TID/children).
Expected<std::vector<pid_t>> read_children(pid_t pid, pid_t tid);
Expected<std::vector<pid_t>> parse_pid_list(std::string_view text);
// Open fd numbers in /proc/PID/fd, ascending.
Expected<std::vector<int>> list_fds(pid_t pid);
// /proc/PID/auxv as (type, value) words, up to and including AT_NULL.
Expected<std::vector<uint64_t>> read_auxv(pid_t pid);

// Reads a whole (/proc) file. ENOENT on "/proc/PID/..." becomes ESRCH ("pid N is gone")
// when /proc/PID itself has disappeared, so callers can tell a vanished process apart.
Expected<std::string> read_proc_file(const std::string& path);
Expected<std::string> read_link(const std::string& path);

}  // namespace criu
