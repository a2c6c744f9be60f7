#include "migrate/net/auth_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu/core/unique_fd.h"

namespace criu {

Expected<AuthKey> AuthKey::from_bytes(std::vector<uint8_t> bytes) {
    if (bytes.size() < kMinBytes)
        return failf(EINVAL, "the key has {} bytes; at least {} are needed (head -c 32 /dev/urandom > FILE)",
                     bytes.size(), kMinBytes);
    if (bytes.size() > kMaxBytes)
        return failf(EINVAL, "the key has {} bytes; at most {} are accepted", bytes.size(), kMaxBytes);
    AuthKey k;
    k.bytes_ = std::move(bytes);
    return k;
}

Expected<AuthKey> AuthKey::load(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd)
        return fail_errno("--auth-key {}: cannot open", path);
    struct stat st{};
    if (fstat(fd.get(), &st) < 0)
        return fail_errno("--auth-key {}: cannot stat", path);
    if (!S_ISREG(st.st_mode))
        return failf(EINVAL, "--auth-key {}: not a regular file", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return failf(EPERM, "--auth-key {}: readable or writable by group or others (mode {:o}); chmod 600 it",
                     path, st.st_mode & 07777);
    if (st.st_size > static_cast<off_t>(kMaxBytes))
        return failf(EINVAL, "--auth-key {}: {} bytes; at most {} are accepted", path, st.st_size, kMaxBytes);
    std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < buf.size()) {
        ssize_t n = ::read(fd.get(), buf.data() + got, buf.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("--auth-key {}: cannot read", path);
        if (n == 0)
            break;
        got += static_cast<size_t>(n);
    }
    buf.resize(got);
    auto k = from_bytes(std::move(buf));
    if (!k)
        k.error().add_context(fmt::format("--auth-key {}", path));
    return k;
}

AuthKey AuthKey::insecure() {
    static constexpr char kPublic[] = "criu page server without --auth-key: this key is public";
    AuthKey k;
    k.bytes_.assign(kPublic, kPublic + sizeof(kPublic) - 1);
    k.insecure_ = true;
    return k;
}

}  // namespace criu
