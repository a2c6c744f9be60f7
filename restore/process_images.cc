#include "restore/process_images.h"

namespace criu {
namespace {

// Reads the single record of a per-process image and refuses a second one: a duplicate
// record would otherwise be ignored silently.
template <class T>
Expected<T> read_single(const ImageDir& dir, ImageType type, pid_t pid) {
    auto r = TRY(dir.open_reader(type, pid));
    T msg = TRY(r.read_one<T>());
    T extra;
    if (TRY(r.read(extra)))
        return failf(EINVAL, "{}: more than one record", r.path());
    return msg;
}

}  // namespace

Expected<ImageSetHeader> load_image_set_header(const ImageDir& dir) {
    ImageSetHeader h;
    h.inventory = TRY(dir.read_inventory());
    if (h.inventory.pre_dump())
        return failf(EINVAL, "{}: this is a pre-dump (memory only); restore needs a full dump",
                     dir.file_path(image_file_name(ImageType::Inventory)));
    auto r = TRY(dir.open_reader(ImageType::Pstree));
    h.pstree = TRY(r.read_all<images::PstreeEntry>());
    if (h.pstree.empty())
        return failf(EINVAL, "{}: no process in the tree", r.path());
    return h;
}

Expected<RestoredProcessImages> load_process_images(const ImageDir& dir, const images::PstreeEntry& entry) {
    RestoredProcessImages p;
    pid_t pid = entry.pid();
    p.entry = entry;
    p.core = TRY_CTX(read_single<images::TaskCore>(dir, ImageType::Core, pid), "pid {}", pid);
    p.mm = TRY_CTX(read_single<images::MmInfo>(dir, ImageType::Mm, pid), "pid {}", pid);
    if (TRY(dir.has(ImageType::Fs, pid)))
        p.fs = TRY_CTX(read_single<images::FsInfo>(dir, ImageType::Fs, pid), "pid {}", pid);
    return p;
}

}  // namespace criu
