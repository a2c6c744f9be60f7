// Everything the images say about one process to restore, read in full before anything acts
// on it: pstree entry, core-<pid>.img (TaskCore), mm-<pid>.img (MmInfo), fs-<pid>.img (FsInfo).
// Pages are planned separately (page_plan.h) because they need the parent image chain.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <vector>

#include "criu/core/error.h"
#include "images/image_dir.h"
// glibc's deprecated sigmask() macro (signal.h, included once above) would turn
// ThreadCore::sigmask() into a syntax error wherever signal.h came first.
#undef sigmask
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/inventory.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"

namespace criu {

struct RestoredProcessImages {
    images::PstreeEntry entry;
    images::TaskCore core;
    images::MmInfo mm;
    std::optional<images::FsInfo> fs;  // absent: keep criu's cwd and root
};

struct ImageSetHeader {
    images::Inventory inventory;
    std::vector<images::PstreeEntry> pstree;  // parents before children
};

// inventory.img and pstree.img; refuses a pre-dump (memory only) and an empty tree.
Expected<ImageSetHeader> load_image_set_header(const ImageDir& dir);
Expected<RestoredProcessImages> load_process_images(const ImageDir& dir, const images::PstreeEntry& entry);

}  // namespace criu
