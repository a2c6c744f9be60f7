// Helpers shared by the cache unit tests: scratch directories, deterministic chunk
// contents, and a remote that can be held, failed and counted.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "migrate/cache/cache_remote.h"
#include "migrate/cache/chunk_cache.h"

namespace criu::test {

// mkdtemp under `base`; removed recursively on destruction.
class CacheTempDir {
public:
    explicit CacheTempDir(const std::string& base = "/tmp");
    ~CacheTempDir();
    CacheTempDir(const CacheTempDir&) = delete;
    CacheTempDir& operator=(const CacheTempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string sub(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// `size` bytes that depend only on `seed`: incompressible random bytes, or with
// `compressible`, half of every 4 KiB page random and half a repeated pattern
// (zstd -1 gets about 2:1).
std::vector<uint8_t> chunk_data(uint64_t seed, size_t size = 64 * 1024, bool compressible = false);

// Flips one byte of a file in place (simulated media corruption).
void flip_byte(const std::string& path, uint64_t offset);
uint64_t file_size(const std::string& path);

// Wraps another remote: counts nothing itself, but can hold every call at a gate and
// fail the next N calls.
class GatedRemote : public ChunkRemote {
public:
    explicit GatedRemote(ChunkRemote& inner) : inner_(inner) {}

    Expected<std::vector<bool>> have(std::span<const ChunkKey> keys) override;
    Status put(std::span<const StoredChunk> chunks) override;

    void close_gate();
    void open_gate();
    // Returns once a call is waiting at the closed gate.
    void wait_until_blocked();
    void fail_next(int calls);

private:
    Status enter();

    ChunkRemote& inner_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool closed_ = false;
    int blocked_ = 0;
    int fail_ = 0;
};

// A standalone store as the remote side plus the CacheRemote in front of it.
struct RemoteSide {
    std::unique_ptr<ChunkCache> store;
    std::unique_ptr<CacheRemote> remote;
    static RemoteSide open(const std::string& dir);
};

}  // namespace criu::test
