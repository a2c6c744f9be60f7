#include "restore/vma_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "images/image_io.h"
#include "restore/page_plan.h"

namespace criu {
namespace {

// A MAP_SHARED|MAP_ANONYMOUS region is a shmem file ("/dev/zero (deleted)"). To map one
// object at several places and offsets (a split or multiply mapped region), create it once
// and get a file descriptor for it through map_files, as the dumped process's own mappings
// would show it.
Expected<UniqueFd> create_shmem(uint64_t size, uint64_t shmid) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return fail_errno("creating a {} byte shared anonymous region for shmid {}", size, shmid);
    auto start = reinterpret_cast<uint64_t>(p);
    std::string path = fmt::format("/proc/self/map_files/{:x}-{:x}", start, start + size);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    int err = errno;
    ::munmap(p, size);
    if (!fd)
        return fail(err, fmt::format("opening {} for shmid {}", path, shmid));
    return fd;
}

std::string memfd_name(const std::string& path) {
    constexpr std::string_view prefix = "/memfd:";
    std::string name = path.starts_with(prefix) ? path.substr(prefix.size()) : path;
    constexpr std::string_view deleted = " (deleted)";
    if (name.ends_with(deleted))
        name.resize(name.size() - deleted.size());
    return name.substr(0, 249);  // MFD_NAME_MAX_LEN
}

bool is_shared_mem(const images::Vma& v) {
    return v.kind() == images::VMA_ANON_SHARED || v.kind() == images::VMA_MEMFD_SHARED;
}

}  // namespace

void SharedMemObjects::note(const images::MmInfo& mm) {
    for (const auto& v : mm.vmas())
        if (is_shared_mem(v)) {
            uint64_t& s = size[{v.dev(), v.shmid()}];
            s = std::max(s, v.pgoff() + (v.end() - v.start()));
        }
}

Expected<VmaFiles> open_vma_files(const images::MmInfo& mm, pid_t pid, uint64_t dump_time_ns, Log& log,
                                  SharedMemObjects* shared) {
    VmaFiles out;
    out.vma_fd.assign(size_t(mm.vmas_size()), -1);
    std::map<std::pair<std::string, int>, int> by_path;  // (path, O_ACCMODE)
    std::map<uint64_t, int> by_shmid;
    std::map<uint64_t, uint64_t> shm_size;
    for (const auto& v : mm.vmas())
        if (v.kind() == images::VMA_ANON_SHARED || v.kind() == images::VMA_MEMFD_SHARED)
            shm_size[v.shmid()] = std::max(shm_size[v.shmid()], v.pgoff() + (v.end() - v.start()));

    for (int i = 0; i < mm.vmas_size(); i++) {
        const auto& v = mm.vmas(i);
        const std::string where = fmt::format("pid {}: {}: vma {} ({:#x}-{:#x} {})", pid,
                                              image_file_name(ImageType::Mm, pid), i, v.start(), v.end(), v.path());
        switch (v.kind()) {
        case images::VMA_FILE_PRIVATE:
        case images::VMA_FILE_SHARED: {
            if (vma_mapped_anonymously(v)) {
                log.info("restore", "{}: the file was deleted; its pages come back as anonymous memory", where);
                break;
            }
            if (v.file_deleted())
                return failf(ENOTSUP, "{}: shared mapping of a file deleted before the dump: the dump holds no "
                                      "copy of the file", where);
            bool shared = v.kind() == images::VMA_FILE_SHARED;
            // A shared mapping that is (or will be made) writable needs a writable file; opening
            // read-write when allowed keeps a later mprotect(PROT_WRITE) working as before.
            int mode = shared ? O_RDWR : O_RDONLY;
            auto key = std::make_pair(v.path(), mode);
            auto it = by_path.find(key);
            if (it == by_path.end()) {
                UniqueFd fd(::open(v.path().c_str(), mode | O_CLOEXEC));
                if (!fd && shared && (errno == EACCES || errno == EROFS || errno == ETXTBSY) &&
                    !(v.prot() & PROT_WRITE)) {
                    mode = O_RDONLY;
                    key.second = mode;
                    fd.reset(::open(v.path().c_str(), mode | O_CLOEXEC));
                }
                if (!fd)
                    return fail_errno("{}: cannot open the mapped file", where);
                struct stat st;
                if (::fstat(fd.get(), &st) < 0)
                    return fail_errno("{}: fstat", where);
                if (v.ino() && st.st_ino != v.ino())
                    return failf(ESTALE, "{}: the file is not the one dumped (inode {} now, {} then): it was "
                                         "replaced", where, st.st_ino, v.ino());
                uint64_t mtime_ns = uint64_t(st.st_mtim.tv_sec) * 1000000000ull + uint64_t(st.st_mtim.tv_nsec);
                if (dump_time_ns && mtime_ns > dump_time_ns && !shared)
                    return failf(ESTALE, "{}: the file was modified after the dump ({} ms later); the restored "
                                         "process would run its old pages against the new contents", where,
                                 (mtime_ns - dump_time_ns) / 1000000);
                it = by_path.emplace(key, int(out.fds.size())).first;
                out.fds.push_back(std::move(fd));
            }
            out.vma_fd[size_t(i)] = it->second;
            break;
        }
        case images::VMA_ANON_SHARED:
        case images::VMA_MEMFD_SHARED: {
            auto it = by_shmid.find(v.shmid());
            const auto key = std::make_pair(v.dev(), v.shmid());
            if (it == by_shmid.end() && shared && shared->fds.contains(key)) {
                UniqueFd fd(::fcntl(shared->fds.at(key).get(), F_DUPFD_CLOEXEC, 0));
                if (!fd)
                    return fail_errno("{}: dup of the shared object", where);
                it = by_shmid.emplace(v.shmid(), int(out.fds.size())).first;
                out.fds.push_back(std::move(fd));
                log.debug("restore", "pid {}: maps the tree's shared object for shmid {}", pid, v.shmid());
            }
            if (it == by_shmid.end()) {
                uint64_t size = shm_size[v.shmid()];
                if (shared && shared->size.contains(key))
                    size = std::max(size, shared->size.at(key));
                UniqueFd fd;
                if (v.kind() == images::VMA_ANON_SHARED) {
                    fd = TRY_CTX(create_shmem(size, v.shmid()), "{}", where);
                } else {
                    if (shared && shared->memfd_object) {
                        fd = TRY_CTX(shared->memfd_object(v.dev(), v.ino()), "{}", where);
                        if (fd)
                            shared->filled.insert(key);
                    }
                    if (!fd) {
                        fd.reset(::memfd_create(memfd_name(v.path()).c_str(), MFD_CLOEXEC));
                        if (!fd)
                            return fail_errno("{}: memfd_create", where);
                        if (::ftruncate(fd.get(), off_t(size)) < 0)
                            return fail_errno("{}: sizing the memfd to {} bytes", where, size);
                    }
                }
                if (shared) {
                    UniqueFd keep(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
                    if (!keep)
                        return fail_errno("{}: dup of the shared object", where);
                    shared->fds.emplace(key, std::move(keep));
                }
                it = by_shmid.emplace(v.shmid(), int(out.fds.size())).first;
                out.fds.push_back(std::move(fd));
                log.debug("restore", "pid {}: shared object {} ({} bytes) for shmid {}", pid, v.path(), size,
                          v.shmid());
            }
            out.vma_fd[size_t(i)] = it->second;
            break;
        }
        default:
            break;
        }
    }

    UniqueFd exe(::open(mm.exe_path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!exe)
        return fail_errno("pid {}: {}: cannot open the executable {}", pid, image_file_name(ImageType::Mm, pid),
                          mm.exe_path());
    out.exe = int(out.fds.size());
    out.fds.push_back(std::move(exe));
    return out;
}

}  // namespace criu
