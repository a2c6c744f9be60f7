#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criu/dump/vma_list.h"

using namespace criu;

namespace {
DumpVma classify(const char* line, std::vector<std::string> flags = {}) {
    auto m = parse_maps_line(line);
    REQUIRE(m);
    m->vm_flags = std::move(flags);
    auto v = classify_vma(42, *m);
    REQUIRE(v);
    return *v;
}
}  // namespace

TEST_CASE("VMA kinds, protections, flags and page policies") {
    auto heap = classify("5600-5700 rw-p 00000000 00:00 0 [heap]", {"rd", "wr", "mr", "mw", "me", "ac"});
    CHECK(heap.vma.kind() == images::VMA_HEAP);
    CHECK(heap.vma.prot() == (PROT_READ | PROT_WRITE));
    CHECK(heap.vma.flags() == (MAP_PRIVATE | MAP_ANONYMOUS));
    CHECK(heap.pages == PagePolicy::Private);
    CHECK(heap.zero_pages_are_holes);

    auto stack = classify("7ffd0000-7ffe0000 rw-p 00000000 00:00 0 [stack]", {"rd", "wr", "gd"});
    CHECK(stack.vma.kind() == images::VMA_STACK);
    CHECK(stack.vma.flags() == (MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN));

    auto lib = classify("7f00-8f00 r-xp 00002000 fe:00 1234 /usr/lib/libx so.6", {"rd", "ex", "mr", "mw", "me"});
    CHECK(lib.vma.kind() == images::VMA_FILE_PRIVATE);
    CHECK(lib.vma.path() == "/usr/lib/libx so.6");
    CHECK(lib.vma.pgoff() == 0x2000);
    CHECK(lib.vma.dev() == makedev(0xfe, 0));
    CHECK(lib.vma.ino() == 1234);
    CHECK(lib.pages == PagePolicy::Private);
    CHECK_FALSE(lib.zero_pages_are_holes);

    auto shm = classify("7f00-8f00 rw-s 00000000 00:01 2050 /dev/zero (deleted)", {"rd", "wr", "sh"});
    CHECK(shm.vma.kind() == images::VMA_ANON_SHARED);
    CHECK(shm.vma.flags() == (MAP_SHARED | MAP_ANONYMOUS));
    CHECK(shm.vma.shmid() == 2050);
    CHECK(shm.vma.path().empty());
    CHECK(shm.pages == PagePolicy::Shared);

    auto shfile = classify("7f00-8f00 rw-s 00000000 08:01 77 /data/file", {"rd", "wr", "sh"});
    CHECK(shfile.vma.kind() == images::VMA_FILE_SHARED);
    CHECK(shfile.pages == PagePolicy::None);

    auto gone = classify("7f00-8f00 r--p 00000000 08:01 77 /data/old (deleted)");
    CHECK(gone.vma.file_deleted());
    CHECK(gone.pages == PagePolicy::AllPrivate);

    auto memfd = classify("7f00-8f00 rw-s 00000000 00:01 99 /memfd:buf (deleted)");
    CHECK(memfd.vma.kind() == images::VMA_MEMFD_SHARED);
    CHECK(memfd.pages == PagePolicy::Shared);

    auto vdso = classify("7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]");
    CHECK(vdso.vma.kind() == images::VMA_VDSO);
    CHECK(vdso.pages == PagePolicy::None);
    auto vvar = classify("7ffe0000-7ffe4000 r--p 00000000 00:00 0 [vvar]", {"rd", "mr", "pf", "io", "de", "dd"});
    CHECK(vvar.vma.kind() == images::VMA_VVAR);
    CHECK(vvar.vma.madvise() == (1u << 1));
    auto vsys = classify("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]");
    CHECK(vsys.vma.kind() == images::VMA_VSYSCALL);

    auto named = classify("7f00-8f00 rw-p 00000000 00:00 0 [anon:my pool]");
    CHECK(named.vma.kind() == images::VMA_ANON_PRIVATE);
}

TEST_CASE("VMAs that cannot be dumped are refused naming the pid and the range") {
    auto m = parse_maps_line("7f00-8f00 rw-s 00000000 00:05 7 /dev/fb0");
    REQUIRE(m);
    m->vm_flags = {"rd", "wr", "sh", "io", "pf"};
    auto dev = classify_vma(42, *m);
    REQUIRE_FALSE(dev);
    CHECK(dev.error().str().find("pid 42 vma 7f00-8f00 /dev/fb0") != std::string::npos);

    auto sysv = parse_maps_line("7f00-8f00 rw-s 00000000 00:01 32768 /SYSV00000000 (deleted)");
    REQUIRE(sysv);
    sysv->vm_flags = {"rd", "wr", "sh", "mr", "mw", "me", "ms"};
    auto seg = classify_vma(42, *sysv);
    REQUIRE(seg);  // the segment id is the inode number; its namespace is preflight's business
    CHECK(seg->vma.kind() == images::VMA_SYSV_SHM);
    CHECK(seg->vma.shmid() == 32768);
    CHECK(seg->vma.sysv_may_write());
    CHECK(seg->vma.path().empty());

    auto odd = parse_maps_line("7f00-8f00 r--p 00000000 00:00 0 [uprobes]");
    REQUIRE(odd);
    CHECK_FALSE(classify_vma(42, *odd));
}

TEST_CASE("vDSO layout is relative to the start of the block") {
    std::vector<DumpVma> vmas;
    auto add = [&](const char* line) {
        auto m = parse_maps_line(line);
        REQUIRE(m);
        auto v = classify_vma(1, *m);
        REQUIRE(v);
        vmas.push_back(*v);
    };
    add("7ffe0000-7ffe4000 r--p 00000000 00:00 0 [vvar]");
    add("7ffe4000-7ffe6000 r--p 00000000 00:00 0 [vvar_vclock]");
    add("7ffe6000-7ffe8000 r-xp 00000000 00:00 0 [vdso]");
    auto l = vdso_layout(vmas);
    REQUIRE(l.parts_size() == 3);
    CHECK(l.parts(0).name() == "[vvar]");
    CHECK(l.parts(0).offset() == 0);
    CHECK(l.parts(1).offset() == 0x4000);
    CHECK(l.parts(2).name() == "[vdso]");
    CHECK(l.parts(2).offset() == 0x6000);
    CHECK(l.parts(2).size() == 0x2000);
}

TEST_CASE("the memory map from maps reuses a known smaps reading only while every line is the same") {
    // A child that maps 16 pages, then on command mprotects one of them (a split).
    int cmd[2], ack[2];
    REQUIRE(pipe(cmd) == 0);
    REQUIRE(pipe(ack) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        auto* p = static_cast<char*>(mmap(nullptr, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        p[0] = 1;
        char c;
        if (write(ack[1], "r", 1) != 1 || read(cmd[0], &c, 1) != 1)
            _exit(1);
        mprotect(p + 4096, 4096, PROT_READ);
        if (write(ack[1], "d", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c;
    REQUIRE(read(ack[0], &c, 1) == 1);
    auto known = collect_vmas(pid);
    REQUIRE(known);
    bool reused = false;
    auto again = collect_vmas_reusing(pid, *known, &reused);
    REQUIRE(again);
    CHECK(reused);
    CHECK(again->size() == known->size());

    REQUIRE(write(cmd[1], "x", 1) == 1);
    REQUIRE(read(ack[0], &c, 1) == 1);
    again = collect_vmas_reusing(pid, *known, &reused);
    REQUIRE(again);
    CHECK_FALSE(reused);
    CHECK(again->size() == known->size() + 2);  // one VMA split in three
    auto fresh = collect_vmas(pid);
    REQUIRE(fresh);
    REQUIRE(fresh->size() == again->size());
    for (size_t i = 0; i < fresh->size(); ++i) {
        CHECK((*fresh)[i].vma.SerializeAsString() == (*again)[i].vma.SerializeAsString());
        CHECK((*fresh)[i].maps.vm_flags == (*again)[i].maps.vm_flags);
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    for (int fd : {cmd[0], cmd[1], ack[0], ack[1]})
        close(fd);
}
