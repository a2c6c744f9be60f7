#include "migrate/track/track_agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <algorithm>
#include <deque>

namespace criu {

namespace {

constexpr uint32_t kMagic = 0x41545243;  // "CRTA"
constexpr uint32_t kOpCollect = 1, kOpStop = 2, kOpPing = 3;
constexpr size_t kHistory = 16;
constexpr int kIoTimeoutMs = 10000;
constexpr uint64_t kMaxReply = 1ull << 30;

struct Request {
    uint32_t magic, op;
    uint64_t session, since, start_time;
};
struct ReplyHead {
    uint32_t magic;
    int32_t status;
    uint64_t session, generation, length;
};
static_assert(sizeof(Request) == 32 && sizeof(ReplyHead) == 32);

Status io_all(int fd, void* buf, size_t len, bool out, const std::string& what) {
    auto* p = static_cast<char*>(buf);
    while (len) {
        pollfd pf{fd, short(out ? POLLOUT : POLLIN), 0};
        int pr = poll(&pf, 1, kIoTimeoutMs);
        if (pr == 0)
            return failf(ETIMEDOUT, "{}: no progress for {} s", what, kIoTimeoutMs / 1000);
        if (pr < 0 && errno != EINTR)
            return fail_errno("{}: poll", what);
        ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return fail_errno("{}", what);
        if (n == 0)
            return failf(ECONNRESET, "{}: connection closed", what);
        p += n;
        len -= size_t(n);
    }
    return {};
}

Status make_dirs(const std::string& dir) {
    for (size_t p = 1; p <= dir.size(); ++p) {
        if (p == dir.size() || dir[p] == '/') {
            std::string sub = dir.substr(0, p);
            if (mkdir(sub.c_str(), 0700) < 0 && errno != EEXIST)
                return fail_errno("cannot create {}", sub);
        }
    }
    return {};
}

Expected<UniqueFd> connect_to(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path)
        return failf(ENAMETOOLONG, "socket path {} is too long", path);
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return fail_errno("socket");
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
        return fail_errno("no tracking agent at {}", path);
    return fd;
}

struct Exchange {
    ReplyHead head;
    std::string payload;
};

Expected<Exchange> exchange(pid_t pid, const std::string& dir, const Request& req) {
    std::string path = agent_socket_path(pid, dir);
    UniqueFd fd = TRY(connect_to(path));
    std::string what = fmt::format("tracking agent {}", path);
    TRY_VOID(io_all(fd.get(), const_cast<Request*>(&req), sizeof req, true, what));
    Exchange x{};
    TRY_VOID(io_all(fd.get(), &x.head, sizeof x.head, false, what));
    if (x.head.magic != kMagic)
        return failf(EPROTO, "{}: bad reply magic {:#x}", what, x.head.magic);
    if (x.head.length > kMaxReply)
        return failf(EPROTO, "{}: reply of {} bytes is too long", what, x.head.length);
    x.payload.resize(x.head.length);
    TRY_VOID(io_all(fd.get(), x.payload.data(), x.payload.size(), false, what));
    if (x.head.status != 0)
        return failf(x.head.status, "{}: {}", what, x.payload);
    return x;
}

// The agent's side.
class AgentServer {
public:
    AgentServer(std::unique_ptr<UffdWpTracker> t, const AgentConfig& cfg, Log& log)
        : tracker_(std::move(t)), cfg_(cfg), log_(log) {}

    Status listen_now(uint64_t session) {
        session_ = session;
        generation_ = 1;
        path_ = agent_socket_path(tracker_->pid(), cfg_.dir);
        unlink(path_.c_str());
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        if (path_.size() >= sizeof sa.sun_path)
            return failf(ENAMETOOLONG, "socket path {} is too long", path_);
        std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
        listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!listen_ || bind(listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 ||
            chmod(path_.c_str(), 0600) < 0 || listen(listen_.get(), 8) < 0)
            return fail_errno("cannot listen on {}", path_);
        struct stat st {};
        if (stat(path_.c_str(), &st) == 0)
            sock_ino_ = st.st_ino;
        return {};
    }

    // Serves until the process exits, STOP, a failed collect or the idle timeout. False when it
    // ended on an error (a failed collect).
    bool serve() {
        bool normal = true;
        for (;;) {
            pollfd pf[2] = {{listen_.get(), POLLIN, 0}, {tracker_->pidfd(), POLLIN, 0}};
            int n = poll(pf, 2, int(cfg_.idle_timeout_s * 1000));
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0) {
                log_.info("agent", "pid {}: no request for {} s: tracking stops", tracker_->pid(),
                          cfg_.idle_timeout_s);
                break;
            }
            if (pf[1].revents) {
                log_.info("agent", "pid {} exited: tracking stops", tracker_->pid());
                break;
            }
            if (pf[0].revents & POLLIN) {
                UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
                if (c && !handle(c.get())) {
                    normal = !failed_;
                    break;
                }
            }
        }
        remove_socket();
        return normal;
    }

private:
    void remove_socket() {
        // Only our own socket: a newer agent may have bound the same path.
        struct stat st {};
        if (stat(path_.c_str(), &st) == 0 && st.st_ino == sock_ino_)
            unlink(path_.c_str());
    }

    Status reply(int fd, int status, const std::string& payload) {
        ReplyHead h{kMagic, status, session_, generation_, payload.size()};
        TRY_VOID(io_all(fd, &h, sizeof h, true, "reply"));
        return io_all(fd, const_cast<char*>(payload.data()), payload.size(), true, "reply");
    }

    // False when the agent must end.
    bool handle(int fd) {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || (cred.uid != 0 && cred.uid != geteuid())) {
            log_.warn("agent", "refused a request from uid {}", cred.uid);
            return true;
        }
        Request req{};
        if (auto r = io_all(fd, &req, sizeof req, false, "request"); !r || req.magic != kMagic) {
            log_.warn("agent", "malformed request: {}", r ? "bad magic" : r.error().str());
            return true;
        }
        switch (req.op) {
        case kOpPing:
            (void)reply(fd, 0, "");
            return true;
        case kOpStop:
            log_.info("agent", "pid {}: asked to stop", tracker_->pid());
            tracker_.reset();  // the uffd closes before the requester hears back
            (void)reply(fd, 0, "");
            return false;
        case kOpCollect:
            return collect(fd, req);
        default:
            (void)reply(fd, EINVAL, fmt::format("unknown request {}", req.op));
            return true;
        }
    }

    bool collect(int fd, const Request& req) {
        if (req.session != session_) {
            (void)reply(fd, ESTALE, fmt::format("tracking session {:#x} is not this agent's ({:#x})", req.session,
                                                session_));
            return true;
        }
        if (req.start_time != tracker_->start_time()) {
            (void)reply(fd, ESRCH, fmt::format("pid {} is another process now (start time {} instead of {})",
                                               tracker_->pid(), req.start_time, tracker_->start_time()));
            return true;
        }
        uint64_t oldest = generation_ - history_.size();
        if (req.since > generation_ || req.since < oldest) {
            (void)reply(fd, ESTALE, fmt::format("generation {} is not known (this agent has {}..{})", req.since,
                                                oldest, generation_));
            return true;
        }
        auto d = tracker_->collect();
        if (!d) {
            log_.error("agent", "pid {}: {}", tracker_->pid(), d.error().str());
            (void)reply(fd, d.error().err() ? d.error().err() : EIO, d.error().str());
            failed_ = true;
            return false;  // a tracker that failed once cannot be trusted again
        }
        ++generation_;
        history_.push_back(std::move(*d));
        if (history_.size() > kHistory)
            history_.pop_front();
        DirtySet out;
        // history_[i] took generation (generation_ - size + i) to the next one.
        uint64_t first = generation_ - history_.size();
        for (size_t i = 0; i < history_.size(); ++i)
            if (first + i >= req.since)
                out.merge(history_[i]);
        log_.info("agent", "pid {}: generation {} -> {}: {} pages written ({} this round, {} us)", tracker_->pid(),
                  req.since, generation_, out.written.pages(), tracker_->last_round().written_pages,
                  tracker_->last_round().collect_us);
        (void)reply(fd, 0, out.encode());
        return true;
    }

    std::unique_ptr<UffdWpTracker> tracker_;
    AgentConfig cfg_;
    Log& log_;
    UniqueFd listen_;
    std::string path_;
    ino_t sock_ino_ = 0;
    uint64_t session_ = 0;
    uint64_t generation_ = 0;
    std::deque<DirtySet> history_;
    bool failed_ = false;
};

// The agent's log, removed again when the agent ends normally (the process exited, STOP, the
// idle timeout): one agent per pre-dump chain would otherwise leave a file behind each time.
// A log that ends on an error stays for whoever looks into it. Only our own file goes: a newer
// agent of a reused pid may have created the same name.
class AgentLogFile {
public:
    AgentLogFile(Log& log, const std::string& path) : path_(path) {
        struct stat st {};
        if (!path_.empty() && log.open_file(path_) && stat(path_.c_str(), &st) == 0)
            ino_ = st.st_ino;
    }
    void remove() const {
        struct stat st {};
        if (ino_ && stat(path_.c_str(), &st) == 0 && st.st_ino == ino_)
            unlink(path_.c_str());
    }

private:
    std::string path_;
    ino_t ino_ = 0;
};

// Everything the agent must not keep from the dumper: its stdio (a caller waiting for EOF on a
// pipe would wait for the agent), its image and log fds, its signal handlers.
void detach_from_dumper(const std::vector<int>& keep) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; ++fd)
        if (null >= 0)
            dup2(null, fd);
    if (DIR* d = opendir("/proc/self/fd")) {
        std::vector<int> close_these;
        while (dirent* e = readdir(d)) {
            int fd = atoi(e->d_name);
            if (fd > 2 && fd != dirfd(d) && std::find(keep.begin(), keep.end(), fd) == keep.end())
                close_these.push_back(fd);
        }
        closedir(d);
        for (int fd : close_these)
            close(fd);
    }
    for (int sig = 1; sig < NSIG; ++sig)
        signal(sig, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    prctl(PR_SET_PDEATHSIG, 0);
    prctl(PR_SET_NAME, "criu-track-agt");
}

[[noreturn]] void agent_main(std::unique_ptr<UffdWpTracker> tracker, const AgentConfig& cfg, int ready_fd) {
    std::vector<int> keep = tracker->fds();
    keep.push_back(ready_fd);
    detach_from_dumper(keep);
    pid_t pid = tracker->pid();
    // The dumper's log went with its fds: the tracker logs to the agent's own from now on.
    Log log(0);
    AgentLogFile log_file(log, cfg.log_path);
    tracker->set_log(log);
    uint64_t session = 0;
    while (getrandom(&session, sizeof session, 0) != sizeof session || session == 0) {
    }
    AgentServer server(std::move(tracker), cfg, log);
    // The ready pipe carries 'K' + AgentState, or 'E' + the error.
    if (auto r = server.listen_now(session); !r) {
        log.error("agent", "pid {}: {}", pid, r.error().str());
        std::string msg = "E" + r.error().str();
        if (write(ready_fd, msg.data(), msg.size()) < 0) {
        }
        _exit(1);
    }
    AgentState s{session, 1};
    std::string msg = "K" + std::string(reinterpret_cast<const char*>(&s), sizeof s);
    if (write(ready_fd, msg.data(), msg.size()) != ssize_t(msg.size()))
        _exit(1);
    close(ready_fd);
    log.info("agent", "tracking pid {} (session {:#x}), socket {}", pid, session, agent_socket_path(pid, cfg.dir));
    if (server.serve())
        log_file.remove();
    _exit(0);
}

}  // namespace

std::string agent_socket_path(pid_t pid, const std::string& dir) { return fmt::format("{}/{}.sock", dir, pid); }

Expected<AgentState> spawn_track_agent(std::unique_ptr<UffdWpTracker> tracker, const AgentConfig& cfg, Log& log) {
    pid_t pid = tracker->pid();
    TRY_VOID(make_dirs(cfg.dir));
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return fail_errno("pipe");
    UniqueFd rd(p[0]), wr(p[1]);
    pid_t mid = fork();
    if (mid < 0)
        return fail_errno("fork of the tracking agent");
    if (mid == 0) {
        // In its own session, and not our child: the dumper exits long before the agent.
        setsid();
        pid_t agent = fork();
        if (agent != 0)
            _exit(agent < 0 ? 1 : 0);
        rd.release();
        agent_main(std::move(tracker), cfg, wr.get());
    }
    wr.reset();
    tracker.reset();  // the agent holds the only uffd from now on
    int st = 0;
    while (waitpid(mid, &st, 0) < 0 && errno == EINTR) {
    }
    std::string msg;
    char buf[512];
    for (;;) {
        pollfd pf{rd.get(), POLLIN, 0};
        if (poll(&pf, 1, kIoTimeoutMs) <= 0)
            return failf(ETIMEDOUT, "pid {}: the tracking agent did not start within {} s", pid, kIoTimeoutMs / 1000);
        ssize_t n = read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        msg.append(buf, size_t(n));
    }
    if (msg.size() != 1 + sizeof(AgentState) || msg[0] != 'K')
        return failf(EIO, "pid {}: the tracking agent failed: {}", pid,
                     msg.size() > 1 && msg[0] == 'E' ? msg.substr(1) : std::string("it died"));
    AgentState s;
    std::memcpy(&s, msg.data() + 1, sizeof s);
    log.info("track", "pid {}: tracking agent started (session {:#x}, socket {})", pid, s.session,
             agent_socket_path(pid, cfg.dir));
    return s;
}

Expected<AgentCollect> agent_collect(pid_t pid, uint64_t session, uint64_t since, uint64_t start_time,
                                     const std::string& dir) {
    Request req{kMagic, kOpCollect, session, since, start_time};
    Exchange x = TRY(exchange(pid, dir, req));
    AgentCollect c;
    c.state = {x.head.session, x.head.generation};
    c.dirty = TRY(DirtySet::decode(x.payload, fmt::format("tracking agent of pid {}", pid)));
    return c;
}

Expected<AgentState> agent_ping(pid_t pid, const std::string& dir) {
    Exchange x = TRY(exchange(pid, dir, Request{kMagic, kOpPing, 0, 0, 0}));
    return AgentState{x.head.session, x.head.generation};
}

Status agent_stop(pid_t pid, const std::string& dir) {
    auto x = exchange(pid, dir, Request{kMagic, kOpStop, 0, 0, 0});
    if (!x && (x.error().err() == ENOENT || x.error().err() == ECONNREFUSED))
        return {};
    if (!x)
        return std::unexpected(std::move(x.error()));
    return {};
}

}  // namespace criu
