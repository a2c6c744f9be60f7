#include "criu/backtrace/process_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "criu/backtrace/elf_check.h"
#include "images/image_io.h"
#include "images/page_store.h"

namespace criu {
namespace {

bool is_file_backed(const images::Vma& v) {
    switch (v.kind()) {
        case images::VMA_FILE_PRIVATE:
        case images::VMA_FILE_SHARED:
            return true;
        default:
            return false;
    }
}

// Opens the file behind `v` if it is one libunwind may read: a regular file (the path
// comes from the images and could name a device or a FIFO) holding a well-formed ELF
// object. Files that are not ELF at all (locale-archive) are skipped without a word.
std::optional<UniqueFd> open_backing_file(const images::Vma& v, std::vector<std::string>& warnings) {
    const std::string& path = v.path();
    struct stat st;
    // stat() before open(): opening a device can have effects of its own (a tape rewinds).
    if (stat(path.c_str(), &st) != 0) {
        warnings.push_back(fmt::format("{}: {}: left out", path, std::strerror(errno)));
        return std::nullopt;
    }
    if (!S_ISREG(st.st_mode)) {
        warnings.push_back(fmt::format("{}: not a regular file now: left out", path));
        return std::nullopt;
    }
    // O_NONBLOCK still: the path may have been replaced by a FIFO since the stat().
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    struct stat now;
    if (!fd || fstat(fd.get(), &now) != 0 || !S_ISREG(now.st_mode) || now.st_ino != st.st_ino) {
        warnings.push_back(fmt::format("{}: could not be opened as the file just seen: left out", path));
        return std::nullopt;
    }
    auto elf = check_elf_for_libunwind(fd.get(), path);
    if (!elf) {
        warnings.push_back(fmt::format("{}: left out", elf.error().str()));
        return std::nullopt;
    }
    if (!*elf)
        return std::nullopt;
    // Only the inode is compared: the device number in /proc/PID/maps is the
    // underlying one on overlayfs while stat() shows the overlay's.
    if (v.ino() != 0 && st.st_ino != v.ino())
        warnings.push_back(fmt::format("{}: inode {} now, {} at the dump: the file may have changed, "
                                       "its symbols and unwind tables may not match",
                                       path, st.st_ino, v.ino()));
    return fd;
}

}  // namespace

Expected<ProcessMemory> ProcessMemory::create(const images::MmInfo& mm, PageReader pages,
                                              const std::string& mm_path) {
    if (static_cast<size_t>(mm.vmas_size()) > kMaxVmas)
        return failf(E2BIG, "{}: {} VMAs, at most {} accepted", mm_path, mm.vmas_size(), kMaxVmas);
    std::vector<images::Vma> vmas;
    vmas.reserve(mm.vmas_size());
    uint64_t prev_end = 0;
    for (int i = 0; i < mm.vmas_size(); i++) {
        const images::Vma& v = mm.vmas(i);
        // The vsyscall page sits at 0xffffffffff600000, in the kernel's half.
        if (v.kind() == images::VMA_VSYSCALL)
            continue;
        auto bad = [&](const char* why) {
            return failf(EINVAL, "{}: VMA {} [{:#x}, {:#x}): {}", mm_path, i, v.start(), v.end(), why);
        };
        if (v.start() % kPageSize || v.end() % kPageSize || v.pgoff() % kPageSize)
            return bad("not page aligned");
        if (v.start() >= v.end())
            return bad("empty or reversed");
        if (v.end() > kMaxUserAddress)
            return bad("outside user space");
        if (v.start() < prev_end)
            return bad("overlaps or precedes the previous VMA");
        if (v.pgoff() > UINT64_MAX - (v.end() - v.start()))
            return bad("file offset wraps");
        prev_end = v.end();
        vmas.push_back(v);
    }
    ProcessMemory m(std::move(vmas), std::move(pages));
    m.vma_file_.assign(m.vmas_.size(), -1);
    return m;
}

std::optional<size_t> ProcessMemory::find_vma(uint64_t addr) const {
    auto it = std::upper_bound(vmas_.begin(), vmas_.end(), addr,
                               [](uint64_t a, const images::Vma& v) { return a < v.end(); });
    if (it == vmas_.end() || addr < it->start())
        return std::nullopt;
    return static_cast<size_t>(it - vmas_.begin());
}

void ProcessMemory::open_files(std::vector<std::string>& warnings) {
    std::map<std::string, int> by_path;
    bool cap_warned = false;
    for (size_t i = 0; i < vmas_.size(); i++) {
        const images::Vma& v = vmas_[i];
        // A deleted file or one without an absolute path (memfd, anon shared) cannot be
        // found again by name; its VMA reads as the images have it.
        if (!is_file_backed(v) || v.file_deleted() || v.path().empty() || v.path()[0] != '/')
            continue;
        if (auto it = by_path.find(v.path()); it != by_path.end()) {
            vma_file_[i] = it->second;
            continue;
        }
        if (files_.size() >= kMaxBackingFiles) {
            if (!cap_warned)
                warnings.push_back(fmt::format("more than {} mapped files: the rest is left out", kMaxBackingFiles));
            cap_warned = true;
            continue;
        }
        auto fd = open_backing_file(v, warnings);
        if (!fd) {
            by_path[v.path()] = -1;
            continue;
        }
        UniqueFd owned = std::move(*fd);
        int id = static_cast<int>(files_.size());
        files_.push_back(BackingFile{v.path(), std::move(owned)});
        by_path[v.path()] = id;
        vma_file_[i] = id;
    }
}

int ProcessMemory::file_fd(size_t vma) const {
    int id = file_id(vma);
    return id < 0 ? -1 : files_[id].fd.get();
}

bool ProcessMemory::has_pages(uint64_t lo, uint64_t hi) const {
    const auto& entries = pages_.entries();
    auto it = std::upper_bound(entries.begin(), entries.end(), lo,
                               [](uint64_t a, const PageEntry& e) { return a < e.end(); });
    return it != entries.end() && it->vaddr < hi;
}

void ProcessMemory::set_fallback(size_t vma, std::string bytes) { fallbacks_.emplace_back(vma, std::move(bytes)); }

bool ProcessMemory::has_fallback(size_t vma) const {
    return std::any_of(fallbacks_.begin(), fallbacks_.end(), [&](const auto& f) { return f.first == vma; });
}

Status ProcessMemory::read_page(uint64_t page, char* dst) {
    auto v = find_vma(page);
    if (!v || !(vmas_[*v].prot() & PROT_READ))
        return failf(EFAULT, "{:#x} is not readable memory of the process", page);
    return read(page, kPageSize, dst);
}

Status ProcessMemory::read_backing(size_t vma, uint64_t lo, uint64_t hi, char* dst) {
    const images::Vma& v = vmas_[vma];
    for (const auto& [index, bytes] : fallbacks_) {
        if (index != vma)
            continue;
        uint64_t from = lo - v.start();
        if (from < bytes.size())
            std::memcpy(dst, bytes.data() + from, std::min<uint64_t>(hi - lo, bytes.size() - from));
        return {};
    }
    int fd = file_fd(vma);
    if (fd < 0)
        return {};
    // A read short of the end leaves zeros: the file shrank, or the mapping runs past
    // its end (where the process would have taken SIGBUS).
    TRY_VOID(pread_full(fd, dst, hi - lo, v.pgoff() + (lo - v.start()), files_[file_id(vma)].path));
    return {};
}

Status ProcessMemory::read(uint64_t vaddr, size_t len, char* dst) {
    if (vaddr % kPageSize || len % kPageSize || vaddr + len < vaddr)
        return failf(EINVAL, "memory read [{:#x}, +{:#x}) is not page aligned", vaddr, len);
    uint64_t end = vaddr + len;
    std::memset(dst, 0, len);
    // From the first VMA ending above vaddr, which may start above it (vaddr in a hole).
    auto first = std::upper_bound(vmas_.begin(), vmas_.end(), vaddr,
                                  [](uint64_t a, const images::Vma& v) { return a < v.end(); });
    for (size_t i = first - vmas_.begin(); i < vmas_.size() && vmas_[i].start() < end; i++) {
        uint64_t lo = std::max<uint64_t>(vaddr, vmas_[i].start());
        uint64_t hi = std::min<uint64_t>(end, vmas_[i].end());
        TRY_VOID(read_backing(i, lo, hi, dst + (lo - vaddr)));
    }
    // The images' pages go over whatever the file said: they are what the process had.
    const auto& entries = pages_.entries();
    auto it = std::upper_bound(entries.begin(), entries.end(), vaddr,
                               [](uint64_t a, const PageEntry& e) { return a < e.end(); });
    for (; it != entries.end() && it->vaddr < end; ++it) {
        uint64_t lo = std::max(vaddr, it->vaddr);
        uint64_t hi = std::min(end, it->end());
        TRY_VOID(pages_.read_range(lo, (hi - lo) / kPageSize, dst + (lo - vaddr)));
    }
    return {};
}

}  // namespace criu
