#include "restore_test_util.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "restore/sigframe.h"

namespace criu::test {

ScratchDir::ScratchDir() {
    char tmpl[] = "/tmp/criu-restore-test-XXXXXX";
    if (!mkdtemp(tmpl))
        throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

ScratchDir::~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

HostInfo fake_host() {
    HostInfo h;
    h.xsave_size = 2432;
    h.xcr0 = 0xe7;
    h.vdso = {{"[vvar]", kVdsoBlock, 0x4000, 0},
              {"[vvar_vclock]", kVdsoBlock + 0x4000, 0x2000, 0x4000},
              {"[vdso]", kVdsoBlock + 0x6000, 0x2000, 0x6000}};
    h.cap_last_cap = 40;
    h.kernel_release = "6.18.44";
    return h;
}

namespace {

void add_vma(images::MmInfo& mm, uint64_t s, uint64_t e, uint32_t prot, uint32_t flags, images::VmaKind kind,
             const std::string& path = "") {
    auto* v = mm.add_vmas();
    v->set_start(s);
    v->set_end(e);
    v->set_prot(prot);
    v->set_flags(flags);
    v->set_kind(kind);
    v->set_path(path);
}

images::ThreadCore make_thread(int32_t tid) {
    images::ThreadCore t;
    t.set_tid(tid);
    UserRegs r{};
    r[kCs] = kUserCs;
    r[kSs] = kUserDs;
    r[kRip] = kTextStart + 0x100;
    r[kRsp] = kStackStart + 0x1000;
    r[kFsBase] = kAnonStart;
    t.set_gpregs(std::string(reinterpret_cast<const char*>(r.data()), sizeof(r)));
    std::string xs(2432, '\0');
    uint64_t bv = 3;  // x87 + SSE
    std::memcpy(xs.data() + kXsaveHeaderOffset, &bv, 8);
    t.set_xsave(xs);
    t.set_comm("worker");
    return t;
}

}  // namespace

RestoredProcessImages valid_process() {
    RestoredProcessImages p;
    p.entry.set_pid(4242);
    p.entry.add_threads(4242);
    p.entry.add_threads(4243);
    p.entry.set_pgid(4242);
    p.entry.set_sid(1);
    p.core.set_pid(4242);
    p.core.set_comm("sleeper");
    *p.core.add_threads() = make_thread(4242);
    *p.core.add_threads() = make_thread(4243);
    for (uint32_t s : {SIGINT, SIGUSR1}) {
        auto* a = p.core.add_sigactions();
        a->set_signo(s);
    }
    auto& mm = p.mm;
    add_vma(mm, kTextStart, kTextStart + 0x2000, PROT_READ | PROT_EXEC, MAP_PRIVATE, images::VMA_FILE_PRIVATE,
            "/bin/true");
    add_vma(mm, kHeapStart, kHeapStart + 0x21000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
            images::VMA_HEAP, "[heap]");
    add_vma(mm, kAnonStart, kAnonStart + 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
            images::VMA_ANON_PRIVATE);
    add_vma(mm, kVdsoBlock, kVdsoBlock + 0x4000, PROT_READ, MAP_PRIVATE, images::VMA_VVAR, "[vvar]");
    add_vma(mm, kVdsoBlock + 0x4000, kVdsoBlock + 0x6000, PROT_READ, MAP_PRIVATE, images::VMA_VVAR_VCLOCK,
            "[vvar_vclock]");
    add_vma(mm, kVdsoBlock + 0x6000, kVdsoBlock + 0x8000, PROT_READ | PROT_EXEC, MAP_PRIVATE, images::VMA_VDSO,
            "[vdso]");
    add_vma(mm, kStackStart, kStackStart + 0x21000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN,
            images::VMA_STACK, "[stack]");
    mm.set_start_code(kTextStart);
    mm.set_end_code(kTextStart + 0x2000);
    mm.set_start_brk(kHeapStart);
    mm.set_brk(kHeapStart + 0x21000);
    mm.set_start_stack(kStackStart + 0x20000);
    mm.set_exe_path("/bin/true");
    for (uint64_t w : {6ull, 4096ull, 0ull, 0ull})
        mm.add_auxv(w);
    return p;
}

images::Inventory valid_inventory() {
    images::Inventory inv;
    inv.set_page_size(4096);
    inv.set_xsave_size(2432);
    inv.set_xcr0(0xe7);
    inv.set_root_pid(4242);
    inv.set_kernel_release("6.18.44");
    return inv;
}

}  // namespace criu::test
