// The address space of one dumped process as its images describe it: the VMAs of
// mm-<pid>.img, the pages of pagemap-/pages-<pid>.img (through the parent chain), and
// the files behind file-backed VMAs, opened again from this host's filesystem.
// A byte reads as the image's page if there is one, else as the mapped file's byte,
// else as zero (an anonymous page never touched, which the dumper leaves out).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"
#include "images/page_reader.h"
#include "proto/mm.pb.h"

namespace criu {

// More VMAs than this is not a process (vm.max_map_count defaults to 65530).
inline constexpr size_t kMaxVmas = 1 << 20;
// Distinct files kept open for one process; each is one descriptor.
inline constexpr size_t kMaxBackingFiles = 512;

class ProcessMemory {
public:
    // Validates the VMAs (page aligned, in user space, sorted, disjoint); the vsyscall
    // page, which is the kernel's, is dropped. `mm_path` names the image in errors.
    static Expected<ProcessMemory> create(const images::MmInfo& mm, PageReader pages, const std::string& mm_path);

    const std::vector<images::Vma>& vmas() const { return vmas_; }
    std::optional<size_t> find_vma(uint64_t addr) const;

    // Opens the file behind each file-backed VMA, once per path, if it is a well-formed
    // ELF file (see elf_check.h). A file that cannot be used is left out with a warning
    // (frames in it then have no symbol and may not unwind); one whose inode differs
    // from the images' is used, with a warning that it may have changed.
    void open_files(std::vector<std::string>& warnings);
    // Descriptor of the file behind VMA `vma`, -1 if none was opened.
    int file_fd(size_t vma) const;
    // Same number for VMAs of the same file, -1 if none.
    int file_id(size_t vma) const { return vma < vma_file_.size() ? vma_file_[vma] : -1; }

    // Whether the images hold any page in [lo, hi).
    bool has_pages(uint64_t lo, uint64_t hi) const;
    // Bytes to show for VMA `vma` where the images hold none (this host's vDSO when the
    // dump left it out); `bytes.size()` must equal the VMA's size.
    void set_fallback(size_t vma, std::string bytes);
    bool has_fallback(size_t vma) const;

    // Fills dst with [vaddr, vaddr + len); both page aligned. Holes read as zeros.
    Status read(uint64_t vaddr, size_t len, char* dst);
    // Fills dst with the page at `page`, which must lie in a readable VMA (EFAULT
    // otherwise, as the process itself would have faulted): an unwinder following a
    // bad pointer stops there instead of reading made-up zeros.
    Status read_page(uint64_t page, char* dst);

private:
    ProcessMemory(std::vector<images::Vma> vmas, PageReader pages)
        : vmas_(std::move(vmas)), pages_(std::move(pages)) {}
    // Fills [lo, hi) of VMA `vma` from its file or fallback; dst points at lo.
    Status read_backing(size_t vma, uint64_t lo, uint64_t hi, char* dst);

    struct BackingFile {
        std::string path;
        UniqueFd fd;
    };

    std::vector<images::Vma> vmas_;
    PageReader pages_;
    std::vector<BackingFile> files_;
    std::vector<int> vma_file_;  // per VMA: index in files_ or -1
    std::vector<std::pair<size_t, std::string>> fallbacks_;
};

}  // namespace criu
