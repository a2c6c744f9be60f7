// An ELF core file (ET_CORE, x86-64) made from a dump's images, so that
// libunwind-coredump can unwind the threads offline. It holds one PT_NOTE (an
// NT_PRSTATUS per thread carrying its registers) and PT_LOAD segments:
//   - memory: bytes written into the core (stacks, the vDSO), read from the images;
//   - files: no bytes in the core (p_filesz 0); libunwind-coredump reads them from a
//     backing file registered after _UCD_create, from file offset (addr - p_vaddr).
// The core lives in a memfd and disappears with the object.
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

struct CoreThread {
    int32_t tid = 0;
    user_regs_struct regs{};
};

// [vaddr, vaddr + size), page aligned; prot is PROT_* of the mapping.
struct CoreMemoryRange {
    uint64_t vaddr = 0;
    uint64_t size = 0;
    uint32_t prot = 0;
};

// A file mapped so that its offset 0 sits at `vaddr` (the load bias of an ELF object),
// covering `size` bytes. The fd is borrowed.
struct CoreFileRange {
    uint64_t vaddr = 0;
    uint64_t size = 0;
    uint32_t prot = 0;
    int fd = -1;
};

struct CoreLayout {
    int32_t pid = 0;
    std::string comm;
    std::vector<CoreThread> threads;
    std::vector<CoreMemoryRange> memory;
    std::vector<CoreFileRange> files;
};

// Fills `dst` with `len` bytes of the process's memory at `vaddr`.
using ReadMemoryFn = std::function<Status(uint64_t vaddr, size_t len, char* dst)>;

// The most bytes of memory a synthesized core may carry: it sits in a memfd, i.e. RAM.
inline constexpr uint64_t kMaxCoreMemoryBytes = 1ull << 30;
// e_phnum is 16 bits; PN_XNUM escapes exist but libunwind-coredump does not read them.
inline constexpr size_t kMaxCoreSegments = 60000;

class SyntheticCore {
public:
    static Expected<SyntheticCore> create(const CoreLayout& layout, const ReadMemoryFn& read);

    // "/proc/self/fd/N": _UCD_create takes a file name.
    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }
    // Program header index of layout.files[i], for _UCD_add_backing_file_at_segment.
    int file_segment_index(size_t i) const { return static_cast<int>(file_phdr_base_ + i); }
    uint64_t size() const { return size_; }

private:
    SyntheticCore(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

    UniqueFd fd_;
    std::string path_;
    size_t file_phdr_base_ = 0;
    uint64_t size_ = 0;
};

}  // namespace criu
