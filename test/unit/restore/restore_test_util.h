// Shared by the restore unit tests: a scratch directory and a small, valid process image that
// each test then breaks in one way.
#pragma once

#include <string>

#include "restore/host_info.h"
#include "restore/process_images.h"

namespace criu::test {

class ScratchDir {
public:
    ScratchDir();
    ~ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// This machine's kind: XSAVE 2432 bytes, XCR0 0xe7, the 6.18 vDSO block at 0x7ff000000000.
HostInfo fake_host();

inline constexpr uint64_t kTextStart = 0x400000;
inline constexpr uint64_t kHeapStart = 0x10000000;
inline constexpr uint64_t kAnonStart = 0x20000000;
inline constexpr uint64_t kStackStart = 0x7ffff0000000;
inline constexpr uint64_t kVdsoBlock = 0x7fff00000000;

// pid 4242 with threads 4242 and 4243: /bin/true mapped privately, a heap, 16 anonymous
// pages, a stack and the vDSO block.
RestoredProcessImages valid_process();
images::Inventory valid_inventory();

}  // namespace criu::test
