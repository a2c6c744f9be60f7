// SSD cache throughput against what this machine can do (MACHINE-LIMITS.md), measured
// in the same run and interleaved, min / median of --runs:
//   disk      write the same amount with O_DIRECT in 4 MiB blocks, fsync included
//   hash      BLAKE2b key of every chunk, one core (CPU ceiling of a put, part 1)
//   zstd      zstd -1 of every chunk, one core (CPU ceiling of a put, part 2)
//   put x1    ChunkCache::put of every chunk from 1 thread, commit included
//   put x2    the same from 2 threads (compression runs outside the cache's lock)
//   batch     put_batch of 16 chunks (1 MiB) at a time, 2 threads inside: one write per
//             batch instead of one per chunk
//   batch raw the same with compression off: what the key, the write and the index
//             cost without zstd
//   dedup     every chunk again into the filled cache: all write hits
//   get       every chunk read back, checked and decompressed, 1 thread
// Data: 64 KiB chunks, each 4 KiB page half random and half a repeated byte (zstd -1
// about 2:1), unique per chunk so nothing is deduplicated by accident.
//
//   bench-cache [--dir /tmp] [--gib 1] [--runs 5] [--chunk 65536]
#include <fcntl.h>
#include <unistd.h>

#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "migrate/cache/chunk_cache.h"

using namespace criu;

namespace {

struct Args {
    std::string dir = "/tmp";
    double gib = 1;
    int runs = 5;
    size_t chunk = 65536;
};

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Data {
public:
    explicit Data(size_t chunk) : chunk_(chunk), pool_(256u << 20) {
        std::mt19937_64 rng(42);
        for (size_t i = 0; i < pool_.size(); i += 8) {
            uint64_t r = rng();
            if ((i % 4096) >= 2048)
                r = 0x6161616161616161ull;
            std::memcpy(&pool_[i], &r, 8);
        }
    }
    // Chunk `i` of run `run`: a slice of the pool, made unique by its first 16 bytes.
    void fill(uint64_t run, uint64_t i, std::vector<uint8_t>& out) const {
        out.resize(chunk_);
        size_t off = (i * chunk_) % (pool_.size() - chunk_);
        std::memcpy(out.data(), &pool_[off], chunk_);
        std::memcpy(out.data(), &run, 8);
        std::memcpy(out.data() + 8, &i, 8);
    }

private:
    size_t chunk_;
    std::vector<uint8_t> pool_;
};

void die(const std::string& what) {
    std::fprintf(stderr, "bench-cache: %s\n", what.c_str());
    std::exit(1);
}

double disk_direct(const std::string& dir, uint64_t bytes) {
    std::string path = dir + "/bench-cache-dd";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd < 0)
        die("open " + path + ": " + std::strerror(errno));
    const size_t block = 4u << 20;
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, block) != 0)
        die("posix_memalign");
    std::memset(buf, 0x5a, block);
    double t0 = now();
    for (uint64_t done = 0; done < bytes; done += block)
        if (::write(fd, buf, block) != static_cast<ssize_t>(block))
            die("O_DIRECT write failed");
    ::fsync(fd);
    double t = now() - t0;
    ::close(fd);
    ::unlink(path.c_str());
    std::free(buf);
    return bytes / t;
}

double cpu_only(const Data& data, uint64_t n, uint64_t run, bool zstd) {
    std::vector<uint8_t> chunk, dst(ZSTD_compressBound(1u << 20));
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    size_t sink = 0;
    double t0 = now();
    for (uint64_t i = 0; i < n; i++) {
        data.fill(run, i, chunk);
        if (zstd)
            sink += ZSTD_compressCCtx(cctx, dst.data(), dst.size(), chunk.data(), chunk.size(), 1);
        else
            sink += hash_chunk(chunk).bytes[0];
    }
    double t = now() - t0;
    ZSTD_freeCCtx(cctx);
    if (sink == 1)
        std::puts("");  // keeps the loop from being optimised away
    return n * chunk.size() / t;
}

struct PutResult {
    double put = 0, dedup = 0, get = 0, ratio = 0;
};

// `threads` caller threads using put(), or with `batch` one caller using put_batch()
// with `threads` threads inside.
PutResult cache_run(const Args& a, const Data& data, uint64_t n, uint64_t run, int threads, int level = 1,
                    bool batch = false) {
    std::string dir = a.dir + "/bench-cache-dir";
    std::filesystem::remove_all(dir);
    ChunkCacheOptions o;
    o.mode = CacheMode::standalone;
    o.cache_size = std::max<uint64_t>(4 * n * a.chunk, 64u << 20);
    o.zstd_level = level;
    o.threads = batch ? threads : 1;
    auto c = ChunkCache::open(dir, o);
    if (!c)
        die(c.error().str());
    ChunkCache& cache = **c;
    PutResult r;
    auto put_range = [&](uint64_t from, uint64_t to) {
        std::vector<uint8_t> chunk;
        for (uint64_t i = from; i < to; i++) {
            data.fill(run, i, chunk);
            if (auto k = cache.put(chunk); !k)
                die(k.error().str());
        }
    };
    auto put_batches = [&] {
        const uint64_t per = 16;
        std::vector<std::vector<uint8_t>> bufs(per);
        std::vector<std::span<const uint8_t>> spans(per);
        for (uint64_t i = 0; i < n; i += per) {
            uint64_t m = std::min(per, n - i);
            for (uint64_t j = 0; j < m; j++) {
                data.fill(run, i + j, bufs[j]);
                spans[j] = bufs[j];
            }
            if (auto k = cache.put_batch(std::span(spans).first(m)); !k)
                die(k.error().str());
        }
    };
    double t0 = now();
    std::vector<std::thread> ts;
    if (batch)
        put_batches();
    else
        for (int t = 0; t < threads; t++)
            ts.emplace_back(put_range, n * t / threads, n * (t + 1) / threads);
    for (auto& t : ts)
        t.join();
    if (auto st = cache.commit(); !st)
        die(st.error().str());
    r.put = n * a.chunk / (now() - t0);
    CacheStats s = cache.stats();
    r.ratio = s.compression_ratio();
    if (s.counters.write_misses != n)
        die("unexpected deduplication in the benchmark data");

    t0 = now();
    put_range(0, n);
    r.dedup = n * a.chunk / (now() - t0);

    std::vector<uint8_t> chunk;
    t0 = now();
    for (uint64_t i = 0; i < n; i++) {
        data.fill(run, i, chunk);
        auto got = cache.get(hash_chunk(chunk));
        if (!got || *got != chunk)
            die("get returned something else");
    }
    // The loop also hashes each chunk to know its key, as a reader holding only the
    // data would not; a restore holds the keys. Reported as measured.
    r.get = n * a.chunk / (now() - t0);
    c->reset();
    std::filesystem::remove_all(dir);
    return r;
}

void report(const char* name, std::vector<double> v, double disk_median) {
    std::sort(v.begin(), v.end());
    double med = v[v.size() / 2];
    std::printf("%-10s min %6.2f  median %6.2f GiB/s", name, v.front() / (1 << 30), med / (1 << 30));
    if (disk_median > 0)
        std::printf("   %.2fx the O_DIRECT disk", med / disk_median);
    std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--dir")
            a.dir = v;
        else if (k == "--gib")
            a.gib = std::stod(v);
        else if (k == "--runs")
            a.runs = std::stoi(v);
        else if (k == "--chunk")
            a.chunk = std::stoul(v);
        else
            die("unknown option " + k);
    }
    uint64_t n = static_cast<uint64_t>(a.gib * (1 << 30)) / a.chunk;
    Data data(a.chunk);
    std::map<std::string, std::vector<double>> m;
    double ratio = 0;
    for (int run = 0; run < a.runs; run++) {
        // Interleaved: the machine's state (host-cold memory, other load) drifts.
        m["disk"].push_back(disk_direct(a.dir, n * a.chunk));
        m["hash"].push_back(cpu_only(data, n, run, false));
        m["zstd"].push_back(cpu_only(data, n, run, true));
        PutResult one = cache_run(a, data, n, run * 2, 1);
        PutResult two = cache_run(a, data, n, run * 2 + 1, 2);
        m["batch"].push_back(cache_run(a, data, n, run * 2 + 1, 2, 1, true).put);
        m["batch raw"].push_back(cache_run(a, data, n, run * 2 + 1, 2, 0, true).put);
        m["put x1"].push_back(one.put);
        m["put x2"].push_back(two.put);
        m["dedup"].push_back(one.dedup);
        m["get"].push_back(one.get);
        ratio = one.ratio;
        std::fprintf(stderr, "run %d: put x1 %.2f x2 %.2f GiB/s\n", run, one.put / (1 << 30), two.put / (1 << 30));
    }
    std::printf("%.2f GiB in %zu KiB chunks, compression ratio %.2f, %d runs\n", n * a.chunk / double(1 << 30),
                a.chunk >> 10, ratio, a.runs);
    auto med = [&](const char* k) {
        auto v = m[k];
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    double disk = med("disk");
    report("disk", m["disk"], 0);
    for (const char* k : {"hash", "zstd", "put x1", "put x2", "batch", "batch raw", "dedup", "get"})
        report(k, m[k], disk);
    return 0;
}
