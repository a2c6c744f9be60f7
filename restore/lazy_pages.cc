#include "restore/lazy_pages.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>

#include "images/image_dir.h"
#include "images/page_reader.h"
#include "restore/lazy_fill.h"

namespace criu {
namespace {

constexpr uint32_t kHelloMagic = 0x31505a4c;  // "LZP1"
constexpr uint32_t kAckMagic = 0x4b415a4c;    // "LZAK"
constexpr uint32_t kMaxRanges = 1u << 20;

struct LazyHello {
    uint32_t magic;
    int32_t pid;
    uint32_t nr_ranges;  // then nr_ranges x {u64 start, u64 end}
    uint32_t pad;
};

struct LazyAck {
    uint32_t magic;
    int32_t err;  // 0: served from now on
    char msg[248];
};

Status write_all(int fd, const void* p, size_t n, const char* what) {
    const char* c = static_cast<const char*>(p);
    while (n) {
        ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail_errno("lazy-pages socket: sending {}", what);
        c += w;
        n -= size_t(w);
    }
    return {};
}

// Reads exactly n bytes; false on EOF before the first byte.
Expected<bool> read_all(int fd, void* p, size_t n, const char* what) {
    char* c = static_cast<char*>(p);
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::recv(fd, c + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fail_errno("lazy-pages socket: reading {}", what);
        if (r == 0) {
            if (got == 0)
                return false;
            return failf(EPIPE, "lazy-pages socket: {} cut short", what);
        }
        got += size_t(r);
    }
    return true;
}

Expected<std::string> socket_path(const std::string& dir) {
    std::string path = dir + "/" + kLazySocketName;
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        return failf(ENAMETOOLONG, "{}: path too long for a unix socket ({} bytes, at most {})", path, path.size(),
                     sizeof(sockaddr_un::sun_path) - 1);
    return path;
}

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

// One process being served.
struct Served {
    std::unique_ptr<LazyServer> server;
    bool failed = false;
};

// Reads one hello (with its uffd) and answers it. False at EOF: restore is done handing over.
Expected<bool> accept_process(int conn, const ImageDir& dir, std::vector<Served>& served, Log& log) {
    LazyHello h{};
    char cbuf[CMSG_SPACE(sizeof(int))];
    iovec iov{&h, sizeof h};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t n;
    do
        n = ::recvmsg(conn, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return false;
    if (n < 0)
        return fail_errno("lazy-pages socket: reading a process");
    UniqueFd uffd;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
            uffd.reset(fd);
        }
    if (size_t(n) != sizeof h || h.magic != kHelloMagic || h.nr_ranges > kMaxRanges)
        return failf(EPROTO, "lazy-pages socket: a malformed hello ({} bytes, magic {:#x})", n, h.magic);
    std::vector<std::pair<uint64_t, uint64_t>> ranges(h.nr_ranges);
    for (auto& r : ranges) {
        uint64_t v[2];
        if (!TRY(read_all(conn, v, sizeof v, "lazy ranges")))
            return failf(EPIPE, "lazy-pages socket: ranges of pid {} cut short", h.pid);
        r = {v[0], v[1]};
    }

    auto setup = [&]() -> Status {
        if (!uffd)
            return failf(EPROTO, "pid {}: no userfaultfd came with the request", h.pid);
        for (const auto& [s, e] : ranges)
            if (s % 4096 || e % 4096 || e <= s)
                return failf(EINVAL, "pid {}: lazy range {:#x}-{:#x} is not page aligned", h.pid, s, e);
        auto reader = std::make_shared<PageReader>(TRY_CTX(PageReader::open(dir, h.pid), "pid {}", h.pid));
        LazyTracker t = lazy_tracker_for(*reader, ranges);
        log.info("lazy-pages", "pid {}: serving {} pages in {} lazy ranges", h.pid, t.total_pages(), ranges.size());
        auto src = [reader](uint64_t a, uint64_t len, char* dst) { return reader->read_range(a, len / 4096, dst); };
        served.push_back({std::make_unique<LazyServer>(h.pid, std::move(uffd), std::move(t), src)});
        return {};
    };
    Status st = setup();
    LazyAck ack{};
    ack.magic = kAckMagic;
    if (!st) {
        ack.err = st.error().err() ? st.error().err() : EINVAL;
        std::snprintf(ack.msg, sizeof ack.msg, "%s", st.error().str().c_str());
        log.error("lazy-pages", "{}", st.error().str());
    }
    TRY_VOID(write_all(conn, &ack, sizeof ack, "the answer"));
    return true;
}

void write_stats(const Options& opts, const std::vector<Served>& served, uint64_t us, Log& log) {
    if (opts.stats_json.empty())
        return;
    LazyServerStats sum;
    for (const auto& s : served) {
        sum.faults += s.server->stats().faults;
        sum.pages_copied += s.server->stats().pages_copied;
        sum.pages_zero += s.server->stats().pages_zero;
        sum.copy_calls += s.server->stats().copy_calls;
    }
    std::ofstream f(opts.stats_json, std::ios::trunc);
    // uint64 as strings, as the other commands' stats (protobuf's JSON mapping).
    f << fmt::format("{{\n \"total_time_us\": \"{}\",\n \"processes\": {},\n \"faults\": \"{}\",\n"
                     " \"pages_copied\": \"{}\",\n \"pages_zero\": \"{}\",\n \"copy_calls\": \"{}\"\n}}\n",
                     us, served.size(), sum.faults, sum.pages_copied, sum.pages_zero, sum.copy_calls);
    if (!f)
        log.warn("lazy-pages", "cannot write {}: {}", opts.stats_json, std::strerror(errno));
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> image_pages_in(const PageReader& reader,
                                                          const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const auto& e : reader.entries()) {
        if (e.zero())
            continue;
        for (const auto& [s, en] : ranges) {
            uint64_t a = std::max(s, e.vaddr), b = std::min(en, e.end());
            if (a < b)
                out.emplace_back(a, b);
        }
    }
    return out;
}

// The tracker owes exactly the pages the images hold in the lazy ranges (not the zero ones).
LazyTracker lazy_tracker_for(const PageReader& reader, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
    LazyTracker t;
    for (const auto& [a, b] : image_pages_in(reader, ranges))
        t.add(a, b);
    return t;
}

Expected<UniqueFd> connect_lazy_daemon(const std::string& images_dir) {
    std::string path = TRY(socket_path(images_dir));
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s)
        return fail_errno("socket for the lazy-pages daemon");
    sockaddr_un a = unix_addr(path);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
        return fail_errno("--lazy-pages: no lazy-pages daemon is listening on {}; start `criu lazy-pages -D {}` "
                          "first", path, images_dir);
    return s;
}

Status send_lazy_process(int sock, int pid, int uffd, const std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
    LazyHello h{kHelloMagic, pid, uint32_t(ranges.size()), 0};
    iovec iov{&h, sizeof h};
    char cbuf[CMSG_SPACE(sizeof(int))]{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
    ssize_t n;
    do
        n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != ssize_t(sizeof h))
        return fail_errno("pid {}: handing the userfaultfd to the lazy-pages daemon", pid);
    for (const auto& [s, e] : ranges) {
        uint64_t v[2] = {s, e};
        TRY_VOID(write_all(sock, v, sizeof v, "lazy ranges"));
    }
    LazyAck ack{};
    if (!TRY(read_all(sock, &ack, sizeof ack, "the daemon's answer")) || ack.magic != kAckMagic)
        return failf(EPROTO, "pid {}: the lazy-pages daemon did not answer", pid);
    if (ack.err) {
        ack.msg[sizeof ack.msg - 1] = 0;
        return failf(ack.err, "pid {}: the lazy-pages daemon refused: {}", pid, ack.msg);
    }
    return {};
}

Expected<int> run_lazy_pages(const Options& opts, Log& log) {
    const auto t0 = std::chrono::steady_clock::now();
    ImageDir dir = TRY(ImageDir::open(opts.images_dir));
    std::string path = TRY(socket_path(dir.path()));
    // Bound under a private name and renamed once listening: a restore that finds the socket
    // can connect to it.
    std::string tmp = path + "." + std::to_string(::getpid());
    UniqueFd lsock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!lsock)
        return fail_errno("socket for {}", path);
    if (tmp.size() >= sizeof(sockaddr_un::sun_path))
        return failf(ENAMETOOLONG, "{}: path too long for a unix socket", tmp);
    ::unlink(tmp.c_str());
    sockaddr_un a = unix_addr(tmp);
    if (::bind(lsock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(lsock.get(), 4) < 0)
        return fail_errno("listening on {}", tmp);
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        ::unlink(tmp.c_str());
        return fail_errno("renaming {} to {}", tmp, path);
    }
    struct Unlink {
        std::string p;
        ~Unlink() { ::unlink(p.c_str()); }
    } unlink_guard{path};
    log.info("lazy-pages", "listening on {}", path);

    UniqueFd conn;
    while (!conn) {
        conn.reset(::accept4(lsock.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn && errno != EINTR && errno != ECONNABORTED)
            return fail_errno("accepting on {}", path);
    }
    lsock.reset();
    unlink_guard.p.clear();
    ::unlink(path.c_str());  // one restore per daemon, as CRIU's

    std::vector<Served> served;
    bool tty = ::isatty(2);
    auto last_progress = std::chrono::steady_clock::now();
    int errors = 0;
    auto fail_process = [&](Served& s, const Error& e) {
        // Never let it run on with holes: closing the uffd would turn every missing page into
        // a zero page.
        log.error("lazy-pages", "{}; killing pid {}", e.str(), s.server->pid());
        ::kill(s.server->pid(), SIGKILL);
        s.failed = true;
        errors++;
    };
    for (;;) {
        bool busy = false;
        std::vector<pollfd> pfds;
        if (conn)
            pfds.push_back({conn.get(), POLLIN, 0});
        for (auto& s : served)
            if (!s.failed && !s.server->gone()) {
                pfds.push_back({s.server->fd(), POLLIN, 0});
                busy = busy || !s.server->finished();
            }
        if (!conn && !busy)
            break;
        int r = ::poll(pfds.data(), pfds.size(), busy ? 0 : -1);
        if (r < 0 && errno != EINTR)
            return fail_errno("poll");
        size_t k = 0;
        if (conn && r > 0 && pfds[k++].revents) {
            auto more = accept_process(conn.get(), dir, served, log);
            if (!more) {
                log.error("lazy-pages", "{}", more.error().str());
                conn.reset();
                errors++;
            } else if (!*more) {
                conn.reset();
            }
        }
        for (auto& s : served) {
            if (s.failed || s.server->gone())
                continue;
            if (Status st = s.server->handle_events(); !st) {
                fail_process(s, st.error());
                continue;
            }
            if (!s.server->finished())
                if (auto b = s.server->fill_background(); !b)
                    fail_process(s, b.error());
        }
        if (tty && std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(500)) {
            last_progress = std::chrono::steady_clock::now();
            uint64_t total = 0, missing = 0;
            for (const auto& s : served) {
                total += s.server->tracker().total_pages();
                missing += s.server->tracker().missing_pages();
            }
            fmt::print(stderr, "\rlazy-pages: {} of {} MiB filled", (total - missing) / 256, total / 256);
        }
    }
    if (tty)
        fmt::print(stderr, "\n");
    uint64_t us = uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    for (const auto& s : served) {
        const auto& st = s.server->stats();
        log.info("lazy-pages", "pid {}: {} faults, {} pages copied, {} zero pages{}", s.server->pid(), st.faults,
                 st.pages_copied, st.pages_zero, s.server->gone() ? " (the process ended first)" : "");
    }
    write_stats(opts, served, us, log);
    return errors ? 1 : 0;
}

}  // namespace criu
