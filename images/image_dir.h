// An image directory: the set of images one dump wrote, plus the link to the dump it
// increments (Inventory.parent_dir). Files are opened relative to a held O_PATH fd, so
// a rename of the path during a dump or restore cannot redirect them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "images/image_io.h"
#include "proto/inventory.pb.h"

namespace criu {

// How many ancestors an incremental chain may have. Pre-copy migration adds one per
// iteration and converges in a handful; a longer chain is a loop we failed to see or
// a hostile inventory.
inline constexpr size_t kMaxParentDepth = 64;

class ImageDir {
public:
    // Opens an existing directory.
    static Expected<ImageDir> open(const std::string& path);
    // Opens `path` for writing, creating it (one level, mode 0700) if missing.
    static Expected<ImageDir> create(const std::string& path);

    const std::string& path() const { return path_; }
    // The O_PATH|O_DIRECTORY descriptor; usable as the dirfd of *at() calls.
    int fd() const { return fd_.get(); }
    // "<dir>/<name>", for messages.
    std::string file_path(const std::string& name) const;

    Expected<ImageReader> open_reader(ImageType type, int64_t id = -1) const;
    Expected<ImageWriter> open_writer(ImageType type, int64_t id = -1) const;
    // Whether the image exists (a stat failing for another reason than ENOENT is an error).
    Expected<bool> has(ImageType type, int64_t id = -1) const;
    Expected<bool> has_file(const std::string& name) const;

    // Names of the regular files in the directory, sorted.
    Expected<std::vector<std::string>> list_files() const;
    // The ids of every per-id image of `type` present ("core-7.img" -> 7), sorted.
    Expected<std::vector<int64_t>> list_ids(ImageType type) const;

    // Reads inventory.img and checks the image set's format version: a major this
    // criu does not read fails here, before anything else is looked at.
    Expected<images::Inventory> read_inventory() const;
    // Writes inventory.img, stamping the format version of this criu.
    Status write_inventory(images::Inventory inv, bool sync = false) const;

    // The directory named by this inventory's parent_dir (relative to this directory
    // or absolute), or an empty optional when there is none.
    Expected<std::optional<ImageDir>> open_parent() const;
    // Every ancestor, nearest first, each with a readable inventory. Fails on a loop
    // (the same directory twice) or a chain longer than `max_depth`.
    Expected<std::vector<ImageDir>> parent_chain(size_t max_depth = kMaxParentDepth) const;

    ImageDir(ImageDir&&) noexcept = default;
    ImageDir& operator=(ImageDir&&) noexcept = default;

private:
    ImageDir(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

    UniqueFd fd_;
    std::string path_;
};

}  // namespace criu
