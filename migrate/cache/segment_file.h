// One append-only segment file of chunk records (chunk_record.h): seg-<id>.dat.
//
// Why a log of segments and not a file per chunk: a put is then one pwrite at an
// offset the cache hands out, with no file creation, no directory update and no inode
// per chunk; write-back and compaction read sequentially; and the kernel sees large
// aligned writes it can send to the disk as they are (O_DIRECT, MACHINE-LIMITS.md:
// 2.3-2.8 GiB/s direct against ~0.5 GiB/s buffered once the page cache needs fresh
// memory). Measured here with 36 KiB chunks (4096 of them, ext4): a file per chunk in
// 256 fan-out directories (create, O_DIRECT write, close, syncfs) took 78-770 us a
// chunk as the ext4 journal filled; appending to one segment, 50-58 us a chunk.
// Space of evicted chunks comes back by compaction (chunk_cache_space.cc).
//
// Shared ownership: readers (get, write-back, verify) hold a shared_ptr while they
// read, so a segment that compaction unlinks meanwhile stays readable through its fd.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "criu/core/error.h"
#include "criu/core/unique_fd.h"

namespace criu {

class SegmentFile {
public:
    static std::string file_name(uint32_t id);
    // Parses "seg-<8 hex>.dat"; false for any other name.
    static bool parse_name(const std::string& name, uint32_t& id);

    // Creates a new, empty segment (fails if it exists: ids are never reused).
    static Expected<std::shared_ptr<SegmentFile>> create(int dirfd, uint32_t id, bool direct_io);
    // Opens an existing segment; `writable` only for relocation reads + recovery repair.
    static Expected<std::shared_ptr<SegmentFile>> open(int dirfd, uint32_t id, bool writable, bool direct_io);

    uint32_t id() const { return id_; }
    bool direct_io() const { return direct_; }
    const std::string& name() const { return name_; }

    // Writes a whole record at `offset`. Both must be multiples of kRecordAlign and the
    // buffer 4096-aligned (AlignedBuffer). Short writes are an error (ENOSPC, EFBIG).
    Status write_at(uint64_t offset, std::span<const uint8_t> rec);
    // Several whole records that lie back to back from `offset`, in one pwritev: one
    // request to the disk instead of one per record (a 64 KiB O_DIRECT write waits
    // ~190 us here, most of it per-request latency).
    Status write_at(uint64_t offset, std::span<const struct iovec> recs);
    // Reads exactly rec.size() bytes at `offset` (same alignment rules).
    Status read_at(uint64_t offset, std::span<uint8_t> buf) const;
    // fdatasync: what was written is on the disk.
    Status sync();
    Expected<uint64_t> file_size() const;

private:
    SegmentFile(UniqueFd fd, uint32_t id, bool direct);
    // Some filesystems take O_DIRECT at open and refuse it per request (EINVAL);
    // switch the fd to buffered I/O then and keep going.
    void drop_direct_io();

    UniqueFd fd_;
    uint32_t id_;
    bool direct_;
    std::string name_;
};

}  // namespace criu
