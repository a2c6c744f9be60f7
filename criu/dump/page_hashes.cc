#include "criu/dump/page_hashes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "criu/core/unique_fd.h"

namespace criu {

namespace {

constexpr uint32_t kMagic = 0x48505243;  // "CRPH"
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 16;
constexpr uint64_t kPage = 4096;

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
// One multiply per word: xor, multiply by an odd constant and rotate are each bijective, so a
// change in any single word always changes the lane (and so the hash); several changes collide
// with a chance of about 2^-64.
inline uint64_t round_(uint64_t acc, uint64_t w) { return rotl((acc ^ w) * kP1, 29); }

Status write_all(int fd, const void* buf, size_t len, const std::string& what) {
    const char* p = static_cast<const char*>(buf);
    while (len) {
        ssize_t n = ::write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno("writing {}", what);
        p += n;
        len -= n;
    }
    return {};
}

}  // namespace

uint64_t page_hash(const void* page) {
    // Eight independent lanes keep the multiplier busy: the loop runs at one multiply per word.
    uint64_t lane[8];
    for (int i = 0; i < 8; ++i)
        lane[i] = kP2 * static_cast<uint64_t>(i + 1);
    const unsigned char* p = static_cast<const unsigned char*>(page);
    for (size_t i = 0; i < kPage; i += 64) {
        uint64_t w[8];
        std::memcpy(w, p + i, sizeof(w));
        for (int j = 0; j < 8; ++j)
            lane[j] = round_(lane[j], w[j]);
    }
    uint64_t h = 0;
    for (int j = 0; j < 8; ++j)
        h = rotl(h, 11) ^ (lane[j] * kP3);
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
}

std::string PageHashes::file_name(pid_t pid) { return fmt::format("pagehash-{}.bin", pid); }

Expected<PageHashes> PageHashes::load(const ImageDir& dir, pid_t pid) {
    PageHashes out;
    std::string name = file_name(pid);
    UniqueFd fd(openat(dir.fd(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT)
            return out;
        return fail_errno("cannot open {}", dir.file_path(name));
    }
    struct stat st {};
    if (fstat(fd.get(), &st) < 0)
        return fail_errno("cannot stat {}", dir.file_path(name));
    std::vector<char> raw(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < raw.size()) {
        ssize_t n = pread(fd.get(), raw.data() + got, raw.size() - got, got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno("cannot read {}", dir.file_path(name));
        got += n;
    }
    uint32_t magic = 0, version = 0;
    uint64_t count = 0;
    if (raw.size() >= kHeader) {
        std::memcpy(&magic, raw.data(), 4);
        std::memcpy(&version, raw.data() + 4, 4);
        std::memcpy(&count, raw.data() + 8, 8);
    }
    // The count must match the file size exactly, so it cannot make us allocate more than the file.
    if (raw.size() < kHeader || magic != kMagic || version != kVersion || count != (raw.size() - kHeader) / 16 ||
        (raw.size() - kHeader) % 16 != 0)
        return failf(EINVAL, "{}: not a page hash file of this version", dir.file_path(name));
    out.entries_.resize(count);
    std::memcpy(out.entries_.data(), raw.data() + kHeader, count * 16);
    for (size_t i = 0; i < count; ++i) {
        uint64_t va = out.entries_[i].vaddr;
        if (va % kPage || (i && va <= out.entries_[i - 1].vaddr))
            return failf(EINVAL, "{}: entry {} is out of order or unaligned", dir.file_path(name), i);
    }
    return out;
}

Status PageHashes::save(const ImageDir& dir, pid_t pid) const {
    std::string name = file_name(pid);
    UniqueFd fd(openat(dir.fd(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd)
        return fail_errno("cannot create {}", dir.file_path(name));
    char header[kHeader];
    uint64_t count = entries_.size();
    std::memcpy(header, &kMagic, 4);
    std::memcpy(header + 4, &kVersion, 4);
    std::memcpy(header + 8, &count, 8);
    TRY_VOID(write_all(fd.get(), header, sizeof(header), dir.file_path(name)));
    return write_all(fd.get(), entries_.data(), entries_.size() * 16, dir.file_path(name));
}

std::optional<uint64_t> PageHashes::find_from(size_t& cursor, uint64_t vaddr) const {
    while (cursor < entries_.size() && entries_[cursor].vaddr < vaddr)
        ++cursor;
    if (cursor < entries_.size() && entries_[cursor].vaddr == vaddr)
        return entries_[cursor].hash;
    return std::nullopt;
}

std::optional<uint64_t> PageHashes::find(uint64_t vaddr) const {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), vaddr,
                               [](const Entry& e, uint64_t v) { return e.vaddr < v; });
    if (it == entries_.end() || it->vaddr != vaddr)
        return std::nullopt;
    return it->hash;
}

}  // namespace criu
