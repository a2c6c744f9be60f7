#include "criu/files/file_locks.h"

#include <fcntl.h>
#include <sys/file.h>

#include <climits>

#include <fmt/format.h>

#include "criu/files/fd_view.h"

namespace criu {
namespace {

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    size_t at = 0;
    while (at < s.size()) {
        while (at < s.size() && (s[at] == ' ' || s[at] == '\t'))
            ++at;
        size_t end = at;
        while (end < s.size() && s[end] != ' ' && s[end] != '\t')
            ++end;
        if (end > at)
            out.push_back(s.substr(at, end - at));
        at = end;
    }
    return out;
}

const char* kind_name(images::FileLockKind k) {
    switch (k) {
    case images::LOCK_POSIX: return "POSIX";
    case images::LOCK_OFD: return "OFD";
    case images::LOCK_FLOCK: return "flock";
    default: return "unknown";
    }
}

}  // namespace

Expected<images::FileLock> parse_lock_line(std::string_view value) {
    // "<id>: <class> <ADVISORY|MANDATORY|...> <READ|WRITE|...> <pid> <maj:min:ino> <start> <end|EOF>"
    auto w = words(value);
    if (w.size() < 8 || !w[0].ends_with(':'))
        return failf(EINVAL, "cannot parse lock line \"{}\"", value);
    images::FileLock l;
    if (w[1] == "POSIX")
        l.set_kind(images::LOCK_POSIX);
    else if (w[1] == "OFDLCK")
        l.set_kind(images::LOCK_OFD);
    else if (w[1] == "FLOCK")
        l.set_kind(images::LOCK_FLOCK);
    else
        return failf(ENOTSUP, "{} lock (\"{}\") cannot be checkpointed", w[1], value);
    if (w[2] != "ADVISORY")
        return failf(ENOTSUP, "{} {} lock cannot be checkpointed", w[2], w[1]);
    if (w[3] == "WRITE")
        l.set_write(true);
    else if (w[3] != "READ")
        return failf(ENOTSUP, "{} lock of type {} (\"{}\") cannot be checkpointed", w[1], w[3], value);
    auto start = parse_number<uint64_t>(w[6]);
    if (!start)
        return failf(EINVAL, "cannot parse the start of lock line \"{}\"", value);
    l.set_start(*start);
    if (w[7] == "EOF") {
        l.set_to_eof(true);
    } else {
        auto end = parse_number<uint64_t>(w[7]);
        if (!end || *end < *start)
            return failf(EINVAL, "cannot parse the end of lock line \"{}\"", value);
        l.set_end(*end);
    }
    return l;
}

Expected<std::vector<images::FileLock>> parse_fdinfo_locks(std::string_view fdinfo) {
    std::vector<images::FileLock> out;
    size_t at = 0;
    while (at < fdinfo.size()) {
        size_t eol = fdinfo.find('\n', at);
        if (eol == std::string_view::npos)
            eol = fdinfo.size();
        std::string_view line = fdinfo.substr(at, eol - at);
        if (line.starts_with("lock:"))
            out.push_back(TRY(parse_lock_line(line.substr(5))));
        at = eol + 1;
    }
    return out;
}

std::string describe_lock(const images::FileLock& l, const std::string& path) {
    std::string what = fmt::format("{} {} lock on ", kind_name(l.kind()), l.write() ? "write" : "read");
    if (l.kind() == images::LOCK_FLOCK)
        return what + (path.empty() ? std::string("the whole file") : path);
    std::string range =
        l.to_eof() ? fmt::format("bytes {}-EOF", l.start()) : fmt::format("bytes {}-{}", l.start(), l.end());
    return what + range + (path.empty() ? std::string() : " of " + path);
}

Status validate_lock(const images::FileLock& l) {
    if (l.kind() != images::LOCK_POSIX && l.kind() != images::LOCK_OFD && l.kind() != images::LOCK_FLOCK)
        return failf(EINVAL, "file lock of unknown kind {}", int(l.kind()));
    if (l.start() > uint64_t(LLONG_MAX) || (!l.to_eof() && (l.end() < l.start() || l.end() > uint64_t(LLONG_MAX))))
        return failf(EINVAL, "file lock range {}-{} is not valid", l.start(), l.end());
    return {};
}

Status apply_lock(int fd, const images::FileLock& l) {
    if (l.kind() == images::LOCK_FLOCK) {
        if (flock(fd, (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0)
            return fail_errno("taking back the {}", describe_lock(l));
        return {};
    }
    struct flock fl {};
    fl.l_type = l.write() ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = off_t(l.start());
    // fdinfo shows the inclusive end; 0 means "to the end of the file, however it grows".
    fl.l_len = l.to_eof() ? 0 : off_t(l.end() - l.start() + 1);
    fl.l_pid = 0;  // F_OFD_SETLK requires it
    if (fcntl(fd, l.kind() == images::LOCK_OFD ? F_OFD_SETLK : F_SETLK, &fl) != 0)
        return fail_errno("taking back the {}", describe_lock(l));
    return {};
}

}  // namespace criu
