#include <catch2/catch.hpp>

#include <cstring>

#include "restore/blob_args.h"
#include "restore/blob_hole.h"
#include "restore/host_info.h"
#include "restore_test_util.h"

using namespace criu;
using namespace criu::test;

TEST_CASE("the vDSO block is read from maps text, and must be contiguous") {
    std::string maps =
        "7ffd2c8c4000-7ffd2c8e5000 rw-p 00000000 00:00 0                          [stack]\n"
        "7ffd2c9a0000-7ffd2c9a4000 r--p 00000000 00:00 0                          [vvar]\n"
        "7ffd2c9a4000-7ffd2c9a6000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
        "7ffd2c9a6000-7ffd2c9a8000 r-xp 00000000 00:00 0                          [vdso]\n";
    auto parts = parse_vdso_block(maps);
    REQUIRE(parts);
    REQUIRE(parts->size() == 3);
    CHECK((*parts)[2].name == "[vdso]");
    CHECK((*parts)[2].offset == 0x6000);
    CHECK((*parts)[1].size == 0x2000);
    std::string gap = maps;
    gap.replace(gap.find("7ffd2c9a6000-"), 13, "7ffd2c9a7000-");
    CHECK_FALSE(parse_vdso_block(gap));
}

TEST_CASE("the real host has the vDSO layout the restore expects") {
    auto h = probe_host();
    REQUIRE(h);
    CHECK(h->xsave_size >= 512 + 64);
    CHECK((h->xcr0 & 3) == 3);
    CHECK_FALSE(h->vdso.empty());
}

TEST_CASE("the blob area goes where neither criu nor the target has anything") {
    auto p = valid_process();
    std::vector<std::pair<uint64_t, uint64_t>> own = {{0x555500000000, 0x555500100000},
                                                      {0x7f0000000000, 0x7f0000100000}};
    auto base = find_blob_hole(p.mm, own, 1 << 20);
    REQUIRE(base);
    CHECK(*base % 4096 == 0);
    for (const auto& [s, e] : own)
        CHECK((*base + (1 << 20) <= s || *base >= e));
    for (const auto& v : p.mm.vmas())
        CHECK((*base + (1 << 20) <= v.start() || *base >= v.end()));
    CHECK_FALSE(find_blob_hole(p.mm, own, 1ull << 47));
}

TEST_CASE("blob args: VMAs, runs, threads and frames land where the blob looks") {
    auto p = valid_process();
    HostInfo host = fake_host();
    PagePlan pages;
    pages.vma_filled.assign(size_t(p.mm.vmas_size()), false);
    pages.vma_filled[2] = true;
    pages.sources = {100};
    pages.runs = {{kAnonStart, 4, 0, 8192}, {kTextStart + 4096, 1, -1, 0}};
    VmaFiles files;
    files.vma_fd.assign(size_t(p.mm.vmas_size()), -1);
    files.vma_fd[0] = 0;
    files.exe = 1;
    BlobFdSlots slots{10, 11, {100}, {200, 201}};
    BlobArgsInput in{&p, &host, &pages, &files, &slots, 5000, true};
    auto args = BlobArgs::build(in);
    REQUIRE(args);
    args->place(0x600000000000);
    const auto& b = args->bytes();
    blob_args a;
    std::memcpy(&a, b.data(), sizeof(a));
    CHECK(a.magic == BLOB_ARGS_MAGIC);
    CHECK(a.nr_threads == 2);
    CHECK(a.area_start == 0x600000000000);
    CHECK(a.area_end == 0x600000000000 + args->area_size());
    CHECK(a.nr_fds == 5);
    CHECK(a.nr_vmas == 4);  // the vDSO block is moved, not mapped
    CHECK(a.vdso_in_target == 1);
    CHECK(a.vdso_target == kVdsoBlock);
    CHECK(a.mm.exe_fd_slot == 2 + 1 + 1);
    CHECK((a.sigaction_valid & (1ull << 8)) == 0);  // SIGKILL
    CHECK((a.sigaction_valid & 1) == 1);

    blob_vma v[4];
    std::memcpy(v, b.data() + a.vmas_off, sizeof(v));
    CHECK(v[0].fd_slot == 3);
    CHECK(v[0].map_prot == v[0].prot);
    CHECK(v[2].map_prot == (v[2].prot | 2));
    CHECK(v[3].map_flags == (0x2 | 0x20 | 0x100));  // private, anonymous, growsdown

    blob_page_run r[2];
    std::memcpy(r, b.data() + a.runs_off, sizeof(r));
    CHECK(r[0].fd_slot == 2);
    CHECK(r[0].file_off == 8192);
    CHECK(r[1].fd_slot == -1);

    blob_thread t[2];
    std::memcpy(t, b.data() + a.threads_off, sizeof(t));
    CHECK(t[1].tid == 4243);
    CHECK(t[0].fs_base == kAnonStart);
    CHECK(t[0].altstack_flags == 2);  // SS_DISABLE: no altstack in the dump
    const uint64_t args_addr = args->layout().args_addr();
    CHECK(t[1].frame % 64 == 0);
    CHECK(t[1].frame > args_addr);
    CHECK(t[1].frame < args_addr + b.size());
    CHECK(t[1].stack_top > args->layout().main_stack_top);
    CHECK(t[1].stack_top <= a.vdso_park);
    // The frame's fpstate pointer is 64-byte aligned and inside the args.
    uint64_t fp;
    std::memcpy(&fp, b.data() + (t[0].frame - args_addr) + 48 + 184, 8);
    CHECK(fp % 64 == 0);
    CHECK(fp > t[0].frame);
    CHECK(fp + 2432 + 4 <= args_addr + b.size());
    CHECK(std::string(t[0].comm) == "worker");
}
