#include "criu/files/net_lock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include <fmt/format.h>

#include "criu/core/unique_fd.h"

extern char** environ;

namespace criu {
namespace {

constexpr const char* kTablePrefix = "criu_tcp_";

std::string ip_str(int family, const std::string& ip) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ip.size() == (family == AF_INET ? 4u : 16u))
        inet_ntop(family, ip.data(), buf, sizeof buf);
    return buf;
}

// An IPv6 socket talking to an IPv4 peer (::ffff:a.b.c.d on both ends) sends IPv4 packets:
// such a connection is blocked by its IPv4 tuple.
TcpTuple as_wire_tuple(const TcpTuple& t) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    auto mapped = [](const std::string& ip) {
        return ip.size() == 16 && std::equal(kMapped, kMapped + 12, reinterpret_cast<const unsigned char*>(ip.data()));
    };
    if (t.family != AF_INET6 || !mapped(t.local_ip) || !mapped(t.peer_ip))
        return t;
    TcpTuple v4 = t;
    v4.family = AF_INET;
    v4.local_ip = t.local_ip.substr(12);
    v4.peer_ip = t.peer_ip.substr(12);
    return v4;
}

Expected<UniqueFd> memfd_with(const std::string& text) {
    UniqueFd fd(memfd_create("criu-nft", MFD_CLOEXEC));
    if (!fd)
        return fail_errno("memfd_create for the nft script");
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno("writing the nft script");
        off += static_cast<size_t>(n);
    }
    if (lseek(fd.get(), 0, SEEK_SET) != 0)
        return fail_errno("lseek on the nft script");
    return fd;
}

std::string read_all_from_start(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0 && out.size() < 65536) {
        out.append(buf, static_cast<size_t>(n));
        off += n;
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
        out.pop_back();
    for (char& c : out)
        if (c == '\n')
            c = ' ';
    return out;
}

}  // namespace

std::string tuple_str(const TcpTuple& t) {
    auto one = [&](const std::string& ip, uint32_t port) {
        return t.family == AF_INET6 ? fmt::format("[{}]:{}", ip_str(t.family, ip), port)
                                    : fmt::format("{}:{}", ip_str(t.family, ip), port);
    };
    return one(t.local_ip, t.local_port) + " -> " + one(t.peer_ip, t.peer_port);
}

Status run_nft(const std::string& script) {
    UniqueFd in = TRY(memfd_with(script));
    UniqueFd err(memfd_create("criu-nft-err", MFD_CLOEXEC));
    if (!err)
        return fail_errno("memfd_create for nft's messages");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in.get(), 0);
    posix_spawn_file_actions_adddup2(&fa, err.get(), 1);
    posix_spawn_file_actions_adddup2(&fa, err.get(), 2);
    char arg0[] = "nft", arg1[] = "-f", arg2[] = "-";
    char* argv[] = {arg0, arg1, arg2, nullptr};
    pid_t pid = -1;
    // nft lives in /usr/sbin, which a non-login PATH may lack.
    int rc = posix_spawnp(&pid, "nft", &fa, nullptr, argv, environ);
    for (const char* path : {"/usr/sbin/nft", "/sbin/nft"})
        if (rc == ENOENT)
            rc = posix_spawn(&pid, path, &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return fail_errno("cannot run nft (Debian package nftables), needed to hold TCP connections");
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return fail_errno("waiting for nft (pid {})", pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return {};
    std::string msg = read_all_from_start(err.get());
    return failf(EIO, "nft failed ({} {}): {}", WIFEXITED(status) ? "exit code" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), msg.empty() ? "no message" : msg);
}

bool valid_lock_table_name(const std::string& name) {
    std::string_view p = kTablePrefix;
    if (name.size() <= p.size() || name.size() > 64 || name.compare(0, p.size(), p) != 0)
        return false;
    for (size_t i = p.size(); i < name.size(); ++i) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '_'))
            return false;
    }
    return true;
}

Status remove_lock_table(const std::string& name, Log& log) {
    if (!valid_lock_table_name(name))
        return failf(EINVAL, "'{}' is not a network lock table name of criu", name);
    // "destroy table" (nft 1.0.8) would ignore a missing table; Debian 12 has 1.0.6: an
    // empty table of that name is added first so that the delete always finds one.
    TRY_VOID_CTX(run_nft(fmt::format("add table inet {0}\ndelete table inet {0}\n", name)),
                 "removing the network lock (nft table inet {})", name);
    log.info("net", "network lock removed (nft table inet {})", name);
    return {};
}

NetLock::~NetLock() {
    if (kept_ || table_.empty())
        return;
    Log quiet(0);
    if (auto st = release(quiet); !st)
        fmt::print(stderr, "Warning: {}\n", st.error().str());
}

Status NetLock::block(const TcpTuple& t0, pid_t pid, Log& log) {
    TcpTuple t = as_wire_tuple(t0);
    std::string script;
    if (table_.empty()) {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
            return fail_errno("getrandom for the network lock's name");
        std::string name = fmt::format("{}{}_{:08x}", kTablePrefix, pid, rnd);
        // Priority raw (-300): before conntrack and every ordinary filter. Each set holds both
        // directions of a connection; `tcp sport` also checks that the packet is TCP.
        std::string rules;
        for (const char* hook : {"input", "output"})
            rules += fmt::format(
                "  chain {0} {{ type filter hook {0} priority -300; policy accept;\n"
                "    ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n"
                "    ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n  }}\n",
                hook);
        script = fmt::format("table inet {} {{\n"
                             "  set conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n"
                             "  set conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
                             "{}}}\n",
                             name, rules);
        table_ = name;  // from here on, release() removes it whatever happens next
    }
    std::string l = ip_str(t.family, t.local_ip), p = ip_str(t.family, t.peer_ip);
    script += fmt::format("add element inet {} {} {{ {} . {} . {} . {}, {} . {} . {} . {} }}\n", table_,
                          t.family == AF_INET ? "conns4" : "conns6", l, t.local_port, p, t.peer_port, p, t.peer_port,
                          l, t.local_port);
    TRY_VOID_CTX(run_nft(script), "blocking TCP connection {} (nft table inet {})", tuple_str(t0), table_);
    log.info("net", "TCP connection {} blocked (nft table inet {})", tuple_str(t0), table_);
    return {};
}

Status NetLock::release(Log& log) {
    if (table_.empty())
        return {};
    std::string name = std::move(table_);
    table_.clear();
    return remove_lock_table(name, log);
}

}  // namespace criu
