#include "test/unit/migrate/cache_test_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>

namespace criu::test {

CacheTempDir::CacheTempDir(const std::string& base) {
    std::string tmpl = base + "/criu-cache-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
}

CacheTempDir::~CacheTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> chunk_data(uint64_t seed, size_t size, bool compressible) {
    std::vector<uint8_t> v(size);
    std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + 1);
    for (size_t i = 0; i < size; i += 8) {
        uint64_t r = rng();
        if (compressible && (i % 4096) >= 2048)
            r = 0x0101010101010101ull * (seed & 0xff);
        std::memcpy(v.data() + i, &r, std::min<size_t>(8, size - i));
    }
    return v;
}

void flip_byte(const std::string& path, uint64_t offset) {
    int fd = ::open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t b = 0;
    REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1);
    b ^= 0x5a;
    REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1);
    ::close(fd);
}

uint64_t file_size(const std::string& path) {
    struct stat st;
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return static_cast<uint64_t>(st.st_size);
}

Status GatedRemote::enter() {
    std::unique_lock lk(mu_);
    blocked_++;
    cv_.notify_all();
    cv_.wait(lk, [&] { return !closed_; });
    blocked_--;
    if (fail_ > 0) {
        fail_--;
        return fail(ECONNRESET, "test remote: connection dropped");
    }
    return {};
}

Expected<std::vector<bool>> GatedRemote::have(std::span<const ChunkKey> keys) {
    TRY_VOID(enter());
    return inner_.have(keys);
}

Status GatedRemote::put(std::span<const StoredChunk> chunks) {
    TRY_VOID(enter());
    return inner_.put(chunks);
}

void GatedRemote::close_gate() {
    std::lock_guard lk(mu_);
    closed_ = true;
}

void GatedRemote::open_gate() {
    std::lock_guard lk(mu_);
    closed_ = false;
    cv_.notify_all();
}

void GatedRemote::wait_until_blocked() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return blocked_ > 0 && closed_; });
}

void GatedRemote::fail_next(int calls) {
    std::lock_guard lk(mu_);
    fail_ = calls;
}

RemoteSide RemoteSide::open(const std::string& dir) {
    ChunkCacheOptions o;
    o.mode = CacheMode::standalone;
    o.cache_size = 512ull << 20;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        FAIL(c.error().str());
    RemoteSide r;
    r.store = std::move(*c);
    r.remote = std::make_unique<CacheRemote>(*r.store);
    return r;
}

}  // namespace criu::test
