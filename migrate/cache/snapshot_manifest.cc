#include "migrate/cache/snapshot_manifest.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "criu/core/unique_fd.h"
#include "images/image_io.h"
#include "migrate/cache/byte_io.h"
#include "migrate/cache/cache_files.h"

namespace criu {
namespace {

constexpr uint32_t kMagic = 0x4e534343;  // "CCSN"
constexpr uint32_t kVersion = 1;
// 64 Mi keys (2 GiB of manifest) is a 4 TiB snapshot at 64 KiB per chunk.
constexpr uint64_t kMaxBytes = 2ull << 30;

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Status SnapshotManifest::check_name(std::string_view name) {
    if (name.empty() || name.size() > kMaxNameBytes)
        return failf(EINVAL, "snapshot name must be 1 to {} characters", kMaxNameBytes);
    if (name[0] == '.')
        return failf(EINVAL, "snapshot name '{}' starts with '.'", name);
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
            return failf(EINVAL, "snapshot name '{}': only letters, digits, '.', '_' and '-' are allowed",
                         name);
    return {};
}

std::vector<uint8_t> SnapshotManifest::encode() const {
    ByteWriter w;
    w.u32(kMagic);
    w.u32(kVersion);
    w.str(name);
    w.u64(keys.size());
    for (const auto& k : keys)
        w.key(k);
    w.u32(crc32c(w.bytes().data(), w.size()));
    return std::move(w.bytes());
}

Expected<SnapshotManifest> SnapshotManifest::decode(std::span<const uint8_t> b) {
    if (b.size() < 8)
        return fail(EIO, "snapshot manifest cut short");
    uint32_t crc;
    std::memcpy(&crc, b.data() + b.size() - 4, 4);
    if (crc != crc32c(b.data(), b.size() - 4))
        return fail(EIO, "snapshot manifest checksum mismatch");
    ByteReader r(b.first(b.size() - 4));
    uint32_t magic = 0, version = 0;
    uint64_t count = 0;
    SnapshotManifest m;
    if (!(r.u32(magic) && r.u32(version)) || magic != kMagic)
        return fail(EIO, "not a snapshot manifest (bad magic)");
    if (version != kVersion)
        return failf(EIO, "snapshot manifest version {} (this build reads {})", version, kVersion);
    if (!(r.str(m.name, kMaxNameBytes) && r.u64(count)))
        return fail(EIO, "snapshot manifest header malformed");
    TRY_VOID(check_name(m.name));
    if (count != r.left() / kChunkKeyBytes || r.left() % kChunkKeyBytes != 0)
        return failf(EIO, "snapshot manifest says {} keys but holds {} bytes of them", count, r.left());
    m.keys.resize(count);
    for (auto& k : m.keys)
        r.key(k);
    return m;
}

Status SnapshotManifest::write(int snapdir) const {
    std::vector<uint8_t> bytes = encode();
    return with_context(write_file_atomic(snapdir, file_name(name), bytes),
                        fmt::format("write snapshot manifest '{}'", name));
}

Expected<SnapshotManifest> SnapshotManifest::read(int snapdir, const std::string& file) {
    auto bytes = TRY(read_file_capped(snapdir, file, kMaxBytes));
    if (!bytes)
        return failf(ENOENT, "snapshot manifest {} does not exist", file);
    SnapshotManifest m = TRY_CTX(decode(*bytes), "snapshot manifest {}", file);
    if (file_name(m.name) != file)
        return failf(EIO, "snapshot manifest {} names snapshot '{}'", file, m.name);
    return m;
}

Status SnapshotManifest::remove(int snapdir, std::string_view name) {
    std::string file = file_name(name);
    if (::unlinkat(snapdir, file.c_str(), 0) != 0)
        return fail_errno("remove snapshot manifest {}", file);
    return fsync_dir(snapdir);
}

Expected<std::vector<std::string>> SnapshotManifest::list(int snapdir, std::vector<std::string>* stale) {
    // fdopendir takes ownership of its fd: give it a duplicate.
    int fd = ::openat(snapdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("open snapshots directory");
    DIR* d = ::fdopendir(fd);
    if (!d) {
        ::close(fd);
        return fail_errno("read snapshots directory");
    }
    std::vector<std::string> out;
    while (struct dirent* de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n == "." || n == "..")
            continue;
        if (ends_with(n, ".snap"))
            out.push_back(n);
        else if (stale)
            stale->push_back(n);
    }
    ::closedir(d);
    return out;
}

}  // namespace criu
