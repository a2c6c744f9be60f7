#include "criu/core/proc_parse.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "criu/core/unique_fd.h"

namespace criu {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

template <class T>
bool parse_num(std::string_view s, T& out, int base = 10) {
    s = trim(s);
    if (s.empty())
        return false;
    const char* b = s.data();
    const char* e = s.data() + s.size();
    // from_chars does not accept a leading '+'; a '-' only for signed types.
    auto r = std::from_chars(b, e, out, base);
    return r.ec == std::errc() && r.ptr == e;
}

// Splits off the next whitespace-separated token.
std::string_view next_token(std::string_view& s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    size_t n = 0;
    while (n < s.size() && s[n] != ' ' && s[n] != '\t')
        ++n;
    std::string_view tok = s.substr(0, n);
    s.remove_prefix(n);
    return tok;
}

template <class F>
void for_each_line(std::string_view text, F&& f) {
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        f(line);
        if (nl == std::string_view::npos)
            break;
        text.remove_prefix(nl + 1);
    }
}

// The kernel escapes '\n' in paths as "\012" (seq_file_path with "\n" as the escape set);
// a real backslash followed by digits cannot be told apart, which the kernel accepts too.
std::string unescape_path(std::string_view p) {
    std::string out;
    out.reserve(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] == '\\' && p.substr(i + 1, 3) == "012") {
            out += '\n';
            i += 3;
        } else {
            out += p[i];
        }
    }
    return out;
}

bool looks_like_maps_header(std::string_view line) {
    // "start-end perms ..." where start is hex; smaps keys are "Word:".
    size_t dash = line.find('-');
    size_t sp = line.find(' ');
    if (dash == std::string_view::npos || sp == std::string_view::npos || dash > sp)
        return false;
    for (size_t i = 0; i < dash; ++i)
        if (!isxdigit(static_cast<unsigned char>(line[i])))
            return false;
    return dash > 0;
}

std::string proc_path(pid_t pid, pid_t tid, std::string_view file) {
    if (tid)
        return fmt::format("/proc/{}/task/{}/{}", pid, tid, file);
    return fmt::format("/proc/{}/{}", pid, file);
}

}  // namespace

bool MapsEntry::has_flag(std::string_view f) const {
    return std::find(vm_flags.begin(), vm_flags.end(), f) != vm_flags.end();
}

Expected<MapsEntry> parse_maps_line(std::string_view line) {
    MapsEntry e;
    std::string_view rest = line;
    std::string_view range = next_token(rest);
    std::string_view perms = next_token(rest);
    std::string_view off = next_token(rest);
    std::string_view dev = next_token(rest);
    std::string_view ino = next_token(rest);
    size_t dash = range.find('-');
    size_t colon = dev.find(':');
    if (dash == std::string_view::npos || perms.size() != 4 || colon == std::string_view::npos ||
        !parse_num(range.substr(0, dash), e.start, 16) || !parse_num(range.substr(dash + 1), e.end, 16) ||
        !parse_num(off, e.pgoff, 16) || !parse_num(dev.substr(0, colon), e.dev_major, 16) ||
        !parse_num(dev.substr(colon + 1), e.dev_minor, 16) || !parse_num(ino, e.ino, 10) || e.end < e.start)
        return failf(EINVAL, "malformed maps line '{}'", line);
    e.read = perms[0] == 'r';
    e.write = perms[1] == 'w';
    e.exec = perms[2] == 'x';
    e.shared = perms[3] == 's';
    // The path is everything after the padding that follows the inode: it may itself contain
    // spaces (and leading spaces are not possible since paths are absolute or "[...]").
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
        rest.remove_prefix(1);
    constexpr std::string_view kDeleted = " (deleted)";
    if (rest.ends_with(kDeleted)) {
        e.deleted = true;
        rest.remove_suffix(kDeleted.size());
    }
    e.path = unescape_path(rest);
    return e;
}

Expected<std::vector<MapsEntry>> parse_maps(std::string_view text) {
    std::vector<MapsEntry> out;
    std::optional<Error> err;
    int lineno = 0;
    for_each_line(text, [&](std::string_view line) {
        ++lineno;
        if (err || line.empty())
            return;
        auto e = parse_maps_line(line);
        if (!e) {
            err = std::move(e.error());
            err->add_context(fmt::format("line {}", lineno));
            return;
        }
        out.push_back(std::move(*e));
    });
    if (err)
        return std::unexpected(std::move(*err));
    return out;
}

Expected<std::vector<MapsEntry>> parse_smaps(std::string_view text) {
    std::vector<MapsEntry> out;
    std::optional<Error> err;
    int lineno = 0;
    for_each_line(text, [&](std::string_view line) {
        ++lineno;
        if (err || line.empty())
            return;
        if (looks_like_maps_header(line)) {
            auto e = parse_maps_line(line);
            if (!e) {
                err = std::move(e.error());
                err->add_context(fmt::format("line {}", lineno));
                return;
            }
            out.push_back(std::move(*e));
            return;
        }
        size_t colon = line.find(':');
        if (colon == std::string_view::npos || out.empty()) {
            err = Error(EINVAL, fmt::format("line {}: malformed smaps line '{}'", lineno, line));
            return;
        }
        std::string_view key = line.substr(0, colon);
        std::string_view val = line.substr(colon + 1);
        MapsEntry& cur = out.back();
        if (key == "VmFlags") {
            for (std::string_view tok = next_token(val); !tok.empty(); tok = next_token(val))
                cur.vm_flags.emplace_back(tok);
            return;
        }
        // "Rss:                   4 kB"; keys without a kB value (THPeligible, ProtectionKey) are
        // numbers too; anything else is ignored as the format grows over kernel versions.
        std::string_view num = next_token(val);
        uint64_t v = 0;
        if (parse_num(num, v))
            cur.kb.emplace(std::string(key), v);
    });
    if (err)
        return std::unexpected(std::move(*err));
    return out;
}

Expected<std::vector<MapsEntry>> read_maps(pid_t pid) {
    std::string text = TRY_CTX(read_proc_file(proc_path(pid, 0, "maps")), "pid {}", pid);
    return with_context(parse_maps(text), fmt::format("/proc/{}/maps", pid));
}

Expected<std::vector<MapsEntry>> read_smaps(pid_t pid) {
    std::string text = TRY_CTX(read_proc_file(proc_path(pid, 0, "smaps")), "pid {}", pid);
    return with_context(parse_smaps(text), fmt::format("/proc/{}/smaps", pid));
}

Expected<ProcStatus> parse_status(std::string_view text) {
    ProcStatus s;
    std::optional<Error> err;
    for_each_line(text, [&](std::string_view line) {
        if (err)
            return;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            return;
        std::string_view key = line.substr(0, colon);
        std::string_view val = trim(line.substr(colon + 1));
        bool ok = true;
        auto hex = [&](uint64_t& out) { ok = parse_num(val, out, 16); };
        auto dec = [&](auto& out) { ok = parse_num(val, out, 10); };
        auto four = [&](uint32_t (&out)[4]) {
            std::string_view rest = val;
            for (int i = 0; i < 4 && ok; ++i)
                ok = parse_num(next_token(rest), out[i], 10);
        };
        if (key == "Name") {
            // The name is escaped by the kernel only for '\n' and '\\'; keep it as shown.
            s.name = std::string(val);
        } else if (key == "State") {
            ok = !val.empty();
            if (ok)
                s.state = val[0];
        } else if (key == "Tgid") {
            dec(s.tgid);
        } else if (key == "Pid") {
            dec(s.pid);
        } else if (key == "PPid") {
            dec(s.ppid);
        } else if (key == "TracerPid") {
            dec(s.tracer_pid);
        } else if (key == "Uid") {
            four(s.uid);
        } else if (key == "Gid") {
            four(s.gid);
        } else if (key == "Groups") {
            std::string_view rest = val;
            for (std::string_view tok = next_token(rest); ok && !tok.empty(); tok = next_token(rest)) {
                uint32_t g = 0;
                ok = parse_num(tok, g, 10);
                s.groups.push_back(g);
            }
        } else if (key == "SigPnd") {
            hex(s.sig_pnd);
        } else if (key == "ShdPnd") {
            hex(s.shd_pnd);
        } else if (key == "SigBlk") {
            hex(s.sig_blk);
        } else if (key == "SigIgn") {
            hex(s.sig_ign);
        } else if (key == "SigCgt") {
            hex(s.sig_cgt);
        } else if (key == "CapInh") {
            hex(s.cap_inh);
        } else if (key == "CapPrm") {
            hex(s.cap_prm);
        } else if (key == "CapEff") {
            hex(s.cap_eff);
        } else if (key == "CapBnd") {
            hex(s.cap_bnd);
        } else if (key == "CapAmb") {
            hex(s.cap_amb);
        } else if (key == "NoNewPrivs") {
            int v = 0;
            dec(v);
            s.no_new_privs = v != 0;
        } else if (key == "Seccomp") {
            dec(s.seccomp);
        } else if (key == "Seccomp_filters") {
            dec(s.seccomp_filters);
        } else if (key == "Umask") {
            uint32_t u = 0;
            ok = parse_num(val, u, 8);
            s.umask = u;
        } else if (key == "Threads") {
            dec(s.threads);
        } else if (key == "x86_Thread_features") {
            s.x86_thread_features = std::string(val);
        }
        if (!ok)
            err = Error(EINVAL, fmt::format("malformed status line '{}'", line));
    });
    if (err)
        return std::unexpected(std::move(*err));
    if (s.pid == 0)
        return fail(EINVAL, "status has no Pid line");
    return s;
}

Expected<ProcStatus> read_status(pid_t pid, pid_t tid) {
    std::string path = proc_path(pid, tid, "status");
    std::string text = TRY_CTX(read_proc_file(path), "pid {}", pid);
    return with_context(parse_status(text), path);
}

Expected<ProcStat> parse_stat(std::string_view text) {
    ProcStat s;
    // "pid (comm) state ...": comm may contain ") (" itself, so the comm ends at the LAST ')'.
    size_t open = text.find('(');
    size_t close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
        !parse_num(text.substr(0, open), s.pid))
        return failf(EINVAL, "malformed stat '{}'", text.substr(0, 64));
    s.comm = std::string(text.substr(open + 1, close - open - 1));
    std::string_view rest = text.substr(close + 1);
    // fields[i] holds proc(5) field i+3 (state is field 3).
    std::vector<std::string_view> fields;
    for (std::string_view tok = next_token(rest); !tok.empty(); tok = next_token(rest)) {
        if (tok.back() == '\n')
            tok.remove_suffix(1);
        if (!tok.empty())
            fields.push_back(tok);
    }
    // Field 52 (exit_code) exists since 3.5.
    if (fields.size() < 52 - 2 || fields[0].size() != 1)
        return failf(EINVAL, "stat of pid {} has {} fields, expected at least 52", s.pid, fields.size() + 2);
    auto f = [&](int n) { return fields[n - 3]; };
    s.state = f(3)[0];
    bool ok = parse_num(f(4), s.ppid) && parse_num(f(5), s.pgrp) && parse_num(f(6), s.session) &&
              parse_num(f(7), s.tty_nr) && parse_num(f(9), s.flags) && parse_num(f(18), s.priority) &&
              parse_num(f(19), s.nice) && parse_num(f(20), s.num_threads) && parse_num(f(26), s.start_code) &&
              parse_num(f(27), s.end_code) && parse_num(f(28), s.start_stack) &&
              parse_num(f(38), s.exit_signal) && parse_num(f(40), s.rt_priority) &&
              parse_num(f(41), s.policy) && parse_num(f(45), s.start_data) && parse_num(f(46), s.end_data) &&
              parse_num(f(47), s.start_brk) && parse_num(f(48), s.arg_start) && parse_num(f(49), s.arg_end) &&
              parse_num(f(50), s.env_start) && parse_num(f(51), s.env_end) && parse_num(f(52), s.exit_code);
    if (!ok)
        return failf(EINVAL, "malformed number in stat of pid {}", s.pid);
    return s;
}

Expected<ProcStat> read_stat(pid_t pid, pid_t tid) {
    std::string path = proc_path(pid, tid, "stat");
    std::string text = TRY_CTX(read_proc_file(path), "pid {}", pid);
    return with_context(parse_stat(text), path);
}

std::optional<std::string_view> FdInfo::get(std::string_view key) const {
    auto it = extra.find(key);
    if (it == extra.end())
        return std::nullopt;
    return std::string_view(it->second);
}

Expected<FdInfo> parse_fdinfo(std::string_view text) {
    FdInfo fi;
    std::optional<Error> err;
    bool have_pos = false, have_flags = false;
    for_each_line(text, [&](std::string_view line) {
        if (err || line.empty())
            return;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            err = Error(EINVAL, fmt::format("malformed fdinfo line '{}'", line));
            return;
        }
        std::string_view key = trim(line.substr(0, colon));
        std::string_view val = trim(line.substr(colon + 1));
        bool ok = true;
        if (key == "pos") {
            ok = parse_num(val, fi.pos);
            have_pos = true;
        } else if (key == "flags") {
            ok = parse_num(val, fi.flags, 8);
            have_flags = true;
        } else if (key == "mnt_id") {
            ok = parse_num(val, fi.mnt_id);
        } else if (key == "ino") {
            ok = parse_num(val, fi.ino);
        } else {
            fi.extra.emplace(std::string(key), std::string(val));
        }
        if (!ok)
            err = Error(EINVAL, fmt::format("malformed fdinfo line '{}'", line));
    });
    if (err)
        return std::unexpected(std::move(*err));
    if (!have_pos || !have_flags)
        return fail(EINVAL, "fdinfo lacks pos or flags");
    return fi;
}

Expected<FdInfo> read_fdinfo(pid_t pid, int fd) {
    std::string path = fmt::format("/proc/{}/fdinfo/{}", pid, fd);
    std::string text = TRY_CTX(read_proc_file(path), "pid {} fd {}", pid, fd);
    return with_context(parse_fdinfo(text), path);
}

Expected<std::vector<ProcTimer>> parse_timers(std::string_view text) {
    std::vector<ProcTimer> out;
    std::optional<Error> err;
    for_each_line(text, [&](std::string_view line) {
        if (err || line.empty())
            return;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            err = Error(EINVAL, fmt::format("malformed timers line '{}'", line));
            return;
        }
        std::string_view key = line.substr(0, colon);
        std::string_view val = trim(line.substr(colon + 1));
        bool ok = true;
        if (key == "ID") {
            out.emplace_back();
            ok = parse_num(val, out.back().id);
        } else if (out.empty()) {
            ok = false;
        } else if (key == "signal") {
            // "14/0000000000000000": signo / sigval pointer (%px, hex without 0x).
            size_t slash = val.find('/');
            ok = slash != std::string_view::npos && parse_num(val.substr(0, slash), out.back().signo) &&
                 parse_num(val.substr(slash + 1), out.back().sigval, 16);
        } else if (key == "notify") {
            // "signal/pid.123", "thread/tid.123", "none/pid.123".
            size_t slash = val.find('/');
            size_t dot = val.find('.');
            ok = slash != std::string_view::npos && dot != std::string_view::npos && dot > slash;
            if (ok) {
                std::string_view how = val.substr(0, slash);
                std::string_view who = val.substr(slash + 1, dot - slash - 1);
                int n = 0;
                if (how == "signal")
                    n = SIGEV_SIGNAL;
                else if (how == "none")
                    n = SIGEV_NONE;
                else if (how == "thread")
                    n = SIGEV_THREAD;
                else
                    ok = false;
                if (who == "tid")
                    n |= SIGEV_THREAD_ID;
                out.back().notify = n;
                ok = ok && parse_num(val.substr(dot + 1), out.back().notify_pid);
            }
        } else if (key == "ClockID") {
            ok = parse_num(val, out.back().clock_id);
        }
        if (!ok)
            err = Error(EINVAL, fmt::format("malformed timers line '{}'", line));
    });
    if (err)
        return std::unexpected(std::move(*err));
    return out;
}

Expected<std::vector<ProcTimer>> read_timers(pid_t pid) {
    std::string path = proc_path(pid, 0, "timers");
    std::string text = TRY_CTX(read_proc_file(path), "pid {}", pid);
    return with_context(parse_timers(text), path);
}

namespace {
// Numeric entries of a /proc directory, ascending.
template <class T>
Expected<std::vector<T>> list_numeric_dir(pid_t pid, const std::string& path) {
    DIR* d = opendir(path.c_str());
    if (!d) {
        int e = errno;
        if (e == ENOENT && access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0)
            return failf(ESRCH, "pid {} is gone", pid);
        return fail(e, fmt::format("cannot list {}", path));
    }
    std::vector<T> out;
    while (dirent* de = readdir(d)) {
        T v{};
        if (parse_num(std::string_view(de->d_name), v))
            out.push_back(v);
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

Expected<std::vector<pid_t>> list_tasks(pid_t pid) {
    return list_numeric_dir<pid_t>(pid, proc_path(pid, 0, "task"));
}

Expected<std::vector<pid_t>> parse_pid_list(std::string_view text) {
    std::vector<pid_t> out;
    std::string_view rest = text;
    for (std::string_view tok = next_token(rest); !tok.empty(); tok = next_token(rest)) {
        if (tok.back() == '\n')
            tok.remove_suffix(1);
        if (tok.empty())
            continue;
        pid_t p = 0;
        if (!parse_num(tok, p))
            return failf(EINVAL, "malformed pid '{}'", tok);
        out.push_back(p);
    }
    return out;
}

Expected<std::vector<pid_t>> read_children(pid_t pid, pid_t tid) {
    std::string path = proc_path(pid, tid, "children");
    std::string text = TRY_CTX(read_proc_file(path), "pid {}", pid);
    return with_context(parse_pid_list(text), path);
}

Expected<std::vector<int>> list_fds(pid_t pid) {
    return list_numeric_dir<int>(pid, proc_path(pid, 0, "fd"));
}

Expected<std::vector<uint64_t>> read_auxv(pid_t pid) {
    std::string path = proc_path(pid, 0, "auxv");
    std::string raw = TRY_CTX(read_proc_file(path), "pid {}", pid);
    if (raw.size() % 16 != 0)
        return failf(EINVAL, "{}: size {} is not a multiple of 16", path, raw.size());
    std::vector<uint64_t> out(raw.size() / 8);
    std::memcpy(out.data(), raw.data(), raw.size());
    // Cut after AT_NULL: the file is the saved_auxv array, zero padded.
    for (size_t i = 0; i + 1 < out.size(); i += 2) {
        if (out[i] == 0) {
            out.resize(i + 2);
            break;
        }
    }
    return out;
}

Expected<std::string> read_proc_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int e = errno;
        // "/proc/<pid>/...": tell a vanished process from a missing entry.
        pid_t pid = 0;
        if (e == ENOENT && path.starts_with("/proc/")) {
            std::string_view rest = std::string_view(path).substr(6);
            size_t slash = rest.find('/');
            if (slash != std::string_view::npos && parse_num(rest.substr(0, slash), pid) &&
                access(fmt::format("/proc/{}", pid).c_str(), F_OK) != 0)
                return failf(ESRCH, "pid {} is gone", pid);
        }
        return fail(e, fmt::format("cannot open {}", path));
    }
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            // A task that exits while its file is read gives ESRCH from seq_file readers.
            return fail_errno("cannot read {}", path);
        }
        if (n == 0)
            break;
        out.append(buf, n);
    }
    return out;
}

Expected<std::string> read_link(const std::string& path) {
    char buf[PATH_MAX + 1];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
    if (n < 0)
        return fail_errno("cannot read link {}", path);
    return std::string(buf, n);
}

}  // namespace criu
