#include "migrate/live/file_transfer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "migrate/cache/byte_io.h"

namespace criu {

namespace {
constexpr size_t kPiece = 4u << 20;
}

Expected<uint64_t> send_image_files(Channel& ch, const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d)
        return fail_errno("cannot list {}", dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        // Logs stay home; pages went through the page protocol.
        if (n == "." || n == ".." || (n.size() > 4 && n.ends_with(".log")) || n.starts_with("pages-") ||
            n.starts_with("pagemap-"))
            continue;
        names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    // inventory.img last: the receiver's set looks complete only once everything arrived.
    std::stable_partition(names.begin(), names.end(), [](const std::string& n) { return n != "inventory.img"; });
    std::vector<uint8_t> buf(kPiece);
    uint64_t sent = 0;
    for (const std::string& n : names) {
        std::string path = dir + "/" + n;
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd)
            return fail_errno("cannot open {}", path);
        struct stat st{};
        if (fstat(fd.get(), &st) < 0)
            return fail_errno("cannot stat {}", path);
        if (!S_ISREG(st.st_mode))
            continue;
        uint64_t total = static_cast<uint64_t>(st.st_size), off = 0;
        do {
            size_t want = static_cast<size_t>(std::min<uint64_t>(kPiece, total - off));
            ssize_t got = want ? ::pread(fd.get(), buf.data(), want, static_cast<off_t>(off)) : 0;
            if (got < 0)
                return fail_errno("cannot read {}", path);
            if (static_cast<size_t>(got) != want)
                return failf(EIO, "{} shrank while being sent", path);
            ByteWriter h;
            h.str(n);
            h.u64(off);
            h.u64(total);
            h.u8(off + want == total ? 1 : 0);
            TRY_VOID_CTX(ch.send(MsgType::file_data, h.bytes(), {buf.data(), want}), "sending {}", path);
            off += want;
            sent += want;
        } while (off < total);
    }
    return sent;
}

bool FileReceiver::valid_name(const std::string& n) {
    if (n.empty() || n.size() > 200 || n[0] == '.')
        return false;
    for (char c : n)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
            return false;
    // Pages come through the page protocol, which checks every range.
    return !n.starts_with("pages-") && !n.starts_with("pagemap-");
}

Status FileReceiver::handle(const Message& m) {
    ByteReader r(m.payload);
    std::string name;
    uint64_t off = 0, total = 0;
    uint8_t last = 0;
    if (!r.str(name, 256) || !r.u64(off) || !r.u64(total) || !r.u8(last) || last > 1)
        return fail(EBADMSG, "malformed file_data");
    if (!valid_name(name))
        return failf(EBADMSG, "file_data: refusing the file name '{}'", name);
    uint64_t len = r.left();
    auto it = files_.find(name);
    if (it == files_.end()) {
        if (off != 0)
            return failf(EBADMSG, "{}: first piece at offset {}", name, off);
        if (total > kMaxTotalBytes || total_ + total > kMaxTotalBytes)
            return failf(EFBIG, "{}: {} bytes would pass the cap of {} bytes of images", name, total, kMaxTotalBytes);
        int fd = ::openat(dirfd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return fail_errno("cannot create {}", name);
        Incoming in;
        in.fd = UniqueFd(fd);
        in.total = total;
        total_ += total;
        it = files_.emplace(name, std::move(in)).first;
    }
    Incoming& in = it->second;
    if (in.done)
        return failf(EBADMSG, "{}: bytes after its last piece", name);
    if (off != in.have || total != in.total || len > in.total - in.have)
        return failf(EBADMSG, "{}: piece at {} (+{}) of {} does not follow the {} bytes received", name, off, len,
                     total, in.have);
    if (bool(last) != (off + len == total))
        return failf(EBADMSG, "{}: last-piece flag disagrees with the size", name);
    const uint8_t* p = m.payload.data() + r.pos();
    uint64_t done = 0;
    while (done < len) {
        ssize_t w = ::pwrite(in.fd.get(), p + done, len - done, static_cast<off_t>(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail_errno("writing {}", name);
        done += static_cast<uint64_t>(w);
    }
    in.have += len;
    if (last) {
        in.done = true;
        if (::fsync(in.fd.get()) < 0)
            return fail_errno("fsync {}", name);
        in.fd.reset();
    }
    return {};
}

Status FileReceiver::check_complete() const {
    for (const auto& [name, in] : files_)
        if (!in.done)
            return failf(EBADMSG, "{}: only {} of {} bytes arrived", name, in.have, in.total);
    if (files_.find("inventory.img") == files_.end())
        return fail(EBADMSG, "the image set has no inventory.img");
    return {};
}

}  // namespace criu
