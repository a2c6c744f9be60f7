#include "images/image_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

namespace criu {
namespace {

Expected<UniqueFd> open_dir_path(int at, const std::string& name, const std::string& shown) {
    int fd = ::openat(at, name.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("{}: cannot open image directory", shown);
    return UniqueFd(fd);
}

std::string join(const std::string& dir, const std::string& rel) {
    if (!rel.empty() && rel[0] == '/')
        return rel;
    if (dir.empty() || dir.back() == '/')
        return dir + rel;
    return dir + "/" + rel;
}

}  // namespace

Expected<ImageDir> ImageDir::open(const std::string& path) {
    UniqueFd fd = TRY(open_dir_path(AT_FDCWD, path, path));
    return ImageDir(std::move(fd), path);
}

Expected<ImageDir> ImageDir::create(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST)
        return fail_errno("{}: cannot create image directory", path);
    return open(path);
}

std::string ImageDir::file_path(const std::string& name) const { return join(path_, name); }

Expected<ImageReader> ImageDir::open_reader(ImageType type, int64_t id) const {
    std::string name = image_file_name(type, id);
    return ImageReader::open_at(fd(), name, type, file_path(name));
}

Expected<ImageWriter> ImageDir::open_writer(ImageType type, int64_t id) const {
    std::string name = image_file_name(type, id);
    return ImageWriter::create_at(fd(), name, type, file_path(name));
}

Expected<bool> ImageDir::has_file(const std::string& name) const {
    struct stat st;
    if (::fstatat(fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return true;
    if (errno == ENOENT)
        return false;
    return fail_errno("{}: cannot stat", file_path(name));
}

Expected<bool> ImageDir::has(ImageType type, int64_t id) const { return has_file(image_file_name(type, id)); }

Expected<std::vector<std::string>> ImageDir::list_files() const {
    // An O_PATH fd cannot be read; open the directory itself through it.
    int rfd = ::openat(fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return fail_errno("{}: cannot open image directory for listing", path_);
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(rfd), ::closedir);
    if (!d) {
        ::close(rfd);
        return fail_errno("{}: fdopendir failed", path_);
    }
    std::vector<std::string> out;
    for (;;) {
        errno = 0;
        struct dirent* e = ::readdir(d.get());
        if (!e) {
            if (errno)
                return fail_errno("{}: readdir failed", path_);
            break;
        }
        bool reg = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN) {  // some filesystems (xfs without ftype) do not fill d_type
            struct stat st;
            reg = ::fstatat(fd(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
        }
        if (reg)
            out.emplace_back(e->d_name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

Expected<std::vector<int64_t>> ImageDir::list_ids(ImageType type) const {
    const auto& info = image_type_info(type);
    std::vector<int64_t> ids;
    if (!info.per_id)
        return ids;
    std::string prefix = std::string(info.prefix) + "-";
    for (const auto& name : TRY(list_files())) {
        const auto* t = image_type_by_name(name);
        if (!t || t->type != type)
            continue;
        // image_type_by_name checked the id is at most 19 digits.
        std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
        unsigned long long v = std::stoull(digits);
        if (v <= uint64_t(INT64_MAX))
            ids.push_back(static_cast<int64_t>(v));
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

Expected<images::Inventory> ImageDir::read_inventory() const {
    auto r = TRY(open_reader(ImageType::Inventory));
    auto inv = TRY(r.read_one<images::Inventory>());
    if (inv.format_major() != kFormatMajor)
        return failf(EINVAL, "{}: image set format {}.{} is not supported (this criu reads {}.x)", r.path(),
                     inv.format_major(), inv.format_minor(), kFormatMajor);
    images::Inventory extra;
    if (TRY(r.read(extra)))
        return failf(EINVAL, "{}: more than one inventory record", r.path());
    return inv;
}

Status ImageDir::write_inventory(images::Inventory inv, bool sync) const {
    inv.set_format_major(kFormatMajor);
    inv.set_format_minor(kFormatMinor);
    auto w = TRY(open_writer(ImageType::Inventory));
    TRY_VOID(w.write(inv));
    return w.close(sync);
}

Expected<std::optional<ImageDir>> ImageDir::open_parent() const {
    auto inv = TRY(read_inventory());
    if (inv.parent_dir().empty())
        return std::optional<ImageDir>();
    std::string shown = join(path_, inv.parent_dir());
    // Relative to this directory's fd, not to the cwd: the dump may have been moved.
    UniqueFd pfd = TRY_CTX(open_dir_path(fd(), inv.parent_dir(), shown), "parent of {}", path_);
    return std::optional<ImageDir>(ImageDir(std::move(pfd), shown));
}

Expected<std::vector<ImageDir>> ImageDir::parent_chain(size_t max_depth) const {
    std::vector<ImageDir> chain;
    std::set<std::pair<dev_t, ino_t>> seen;
    struct stat st;
    if (::fstat(fd(), &st) < 0)
        return fail_errno("{}: fstat failed", path_);
    seen.insert({st.st_dev, st.st_ino});
    for (;;) {
        // Re-taken each round: push_back may move the vector's elements.
        const ImageDir& cur = chain.empty() ? *this : chain.back();
        auto parent = TRY(cur.open_parent());
        if (!parent)
            return chain;
        if (chain.size() >= max_depth)
            return failf(ELOOP, "{}: parent chain is longer than {} images", path_, max_depth);
        if (::fstat(parent->fd(), &st) < 0)
            return fail_errno("{}: fstat failed", parent->path());
        if (!seen.insert({st.st_dev, st.st_ino}).second)
            return failf(ELOOP, "{}: parent chain loops: {} is already in it", path_, parent->path());
        chain.push_back(std::move(*parent));
    }
}

}  // namespace criu
