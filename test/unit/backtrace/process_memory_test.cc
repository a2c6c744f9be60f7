// ProcessMemory (VMAs + pages + files), the core plan drawn from it, and the ELF check
// that guards libunwind from malformed files.
#include <catch2/catch.hpp>

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "criu/backtrace/core_plan.h"
#include "criu/backtrace/elf_check.h"
#include "criu/backtrace/process_memory.h"
#include "images/image_dir.h"
#include "images/page_writer.h"
#include "test/unit/images/test_util.h"

using namespace criu;

namespace {

constexpr uint64_t kStack = 0x7ff000000000;

images::Vma vma(uint64_t start, uint64_t end, images::VmaKind kind, uint32_t prot, uint64_t pgoff = 0,
                const std::string& path = "") {
    images::Vma v;
    v.set_start(start);
    v.set_end(end);
    v.set_kind(kind);
    v.set_prot(prot);
    v.set_pgoff(pgoff);
    v.set_path(path);
    return v;
}

// An ELF object laid out as ld.so maps a DSO: text at the same bias as the headers,
// the data segment one page further on, then .bss; plus a stack, and a file whose
// offset 0 would fall under someone else's mapping.
images::MmInfo dso_layout() {
    images::MmInfo mm;
    const std::string elf = BT_TARGET_PATH;
    *mm.add_vmas() = vma(0x400000, 0x401000, images::VMA_FILE_PRIVATE, PROT_READ, 0, elf);
    *mm.add_vmas() = vma(0x401000, 0x402000, images::VMA_FILE_PRIVATE, PROT_READ | PROT_EXEC, 0x1000, elf);
    *mm.add_vmas() = vma(0x402000, 0x403000, images::VMA_FILE_PRIVATE, PROT_READ, 0x2000, elf);
    *mm.add_vmas() = vma(0x404000, 0x405000, images::VMA_FILE_PRIVATE, PROT_READ | PROT_WRITE, 0x3000, elf);
    *mm.add_vmas() = vma(0x405000, 0x406000, images::VMA_ANON_PRIVATE, PROT_READ | PROT_WRITE);
    *mm.add_vmas() = vma(0x500000, 0x501000, images::VMA_ANON_PRIVATE, PROT_READ | PROT_WRITE);
    *mm.add_vmas() = vma(0x501000, 0x502000, images::VMA_FILE_PRIVATE, PROT_READ | PROT_EXEC, 0x2000, elf);
    *mm.add_vmas() = vma(kStack, kStack + 0x10000, images::VMA_STACK, PROT_READ | PROT_WRITE);
    images::Vma vsyscall = vma(0xffffffffff600000ull, 0xffffffffff601000ull, images::VMA_VSYSCALL, PROT_READ);
    *mm.add_vmas() = vsyscall;
    return mm;
}

// An image dir whose pages-1 holds one page of 'P' at 0x401000 (over the file's text)
// and one page of 'Q' at the top of the stack.
PageReader write_pages(const test::TempDir& tmp) {
    auto dir = ImageDir::create(tmp.file("img"));
    REQUIRE(dir);
    images::Inventory inv;
    REQUIRE(dir->write_inventory(inv));
    PageWriterOptions o;
    o.threads = 0;
    auto w = PageWriter::create(*dir, 1, o);
    REQUIRE(w);
    std::string p(4096, 'P'), q(4096, 'Q');
    REQUIRE(w->add_pages(0x401000, p.data(), 1));
    REQUIRE(w->add_pages(kStack + 0xf000, q.data(), 1));
    REQUIRE(w->finish());
    auto r = PageReader::open(*dir, 1);
    REQUIRE(r);
    return std::move(*r);
}

std::string file_bytes(uint64_t off, size_t len) {
    std::string s(len, '\0');
    UniqueFd fd(open(BT_TARGET_PATH, O_RDONLY | O_CLOEXEC));
    REQUIRE(pread(fd.get(), s.data(), len, static_cast<off_t>(off)) == static_cast<ssize_t>(len));
    return s;
}

}  // namespace

TEST_CASE("memory: images' pages over file bytes over zeros") {
    test::TempDir tmp;
    auto mem = ProcessMemory::create(dso_layout(), write_pages(tmp), "mm-1.img");
    REQUIRE(mem);
    REQUIRE(mem->vmas().size() == 8);  // the vsyscall page is dropped
    std::vector<std::string> warnings;
    mem->open_files(warnings);
    REQUIRE(warnings.empty());
    REQUIRE(mem->file_fd(0) >= 0);
    REQUIRE(mem->file_id(0) == mem->file_id(6));
    REQUIRE(mem->file_fd(4) == -1);

    std::string buf(0x4000, 'x');
    REQUIRE(mem->read(0x400000, buf.size(), buf.data()));
    REQUIRE(buf.substr(0, 0x1000) == file_bytes(0, 0x1000));            // the file at pgoff 0
    REQUIRE(buf.substr(0x1000, 0x1000) == std::string(0x1000, 'P'));    // the image's page wins
    REQUIRE(buf.substr(0x2000, 0x1000) == file_bytes(0x2000, 0x1000));
    REQUIRE(buf.substr(0x3000, 0x1000) == std::string(0x1000, '\0'));   // a hole: nothing mapped

    // The data segment reads the file at its own pgoff, not at the bias of the text.
    REQUIRE(mem->read(0x404000, 0x1000, buf.data()));
    REQUIRE(buf.substr(0, 0x1000) == file_bytes(0x3000, 0x1000));

    // Starting inside a hole, running into the stack.
    std::string stack(0x2000, 'x');
    REQUIRE(mem->read(kStack + 0xe000, stack.size(), stack.data()));
    REQUIRE(stack.substr(0, 0x1000) == std::string(0x1000, '\0'));
    REQUIRE(stack.substr(0x1000) == std::string(0x1000, 'Q'));

    REQUIRE(mem->has_pages(kStack, kStack + 0x10000));
    REQUIRE(!mem->has_pages(kStack, kStack + 0xf000));
    REQUIRE(!mem->read(0x400001, 0x1000, buf.data()));

    REQUIRE(mem->find_vma(0x401fff) == 1u);
    REQUIRE(!mem->find_vma(0x403000));
    REQUIRE(!mem->find_vma(0x10));
}

TEST_CASE("memory: malformed VMA lists are refused") {
    test::TempDir tmp;
    auto bad = [&](images::Vma v) {
        images::MmInfo mm;
        *mm.add_vmas() = vma(0x10000, 0x20000, images::VMA_ANON_PRIVATE, PROT_READ);
        *mm.add_vmas() = v;
        return !ProcessMemory::create(mm, write_pages(tmp), "mm-1.img");
    };
    REQUIRE(bad(vma(0x20001, 0x30000, images::VMA_ANON_PRIVATE, PROT_READ)));         // unaligned
    REQUIRE(bad(vma(0x30000, 0x30000, images::VMA_ANON_PRIVATE, PROT_READ)));         // empty
    REQUIRE(bad(vma(0x40000, 0x30000, images::VMA_ANON_PRIVATE, PROT_READ)));         // reversed
    REQUIRE(bad(vma(0x18000, 0x30000, images::VMA_ANON_PRIVATE, PROT_READ)));         // overlaps
    REQUIRE(bad(vma(0x1000, 0x2000, images::VMA_ANON_PRIVATE, PROT_READ)));           // out of order
    REQUIRE(bad(vma(1ull << 56, (1ull << 56) + 0x1000, images::VMA_ANON_PRIVATE, 0))); // kernel half
    REQUIRE(bad(vma(0x30000, 0x31000, images::VMA_FILE_PRIVATE, PROT_READ, ~uint64_t(0xfff), "/x")));
}

TEST_CASE("memory: unusable backing files become warnings, not failures") {
    test::TempDir tmp;
    std::string fifo = tmp.file("fifo");
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    std::string text = tmp.file("text");
    test::write_file(text, "not an ELF file\n");
    std::string cut = tmp.file("cut");
    test::write_file(cut, file_bytes(0, 0x1000));  // headers say there is more
    images::MmInfo mm;
    *mm.add_vmas() = vma(0x10000, 0x11000, images::VMA_FILE_PRIVATE, PROT_READ, 0, fifo);
    *mm.add_vmas() = vma(0x11000, 0x12000, images::VMA_FILE_PRIVATE, PROT_READ, 0, "/dev/zero");
    *mm.add_vmas() = vma(0x12000, 0x13000, images::VMA_FILE_PRIVATE, PROT_READ, 0, tmp.file("missing"));
    *mm.add_vmas() = vma(0x13000, 0x14000, images::VMA_FILE_PRIVATE, PROT_READ, 0, text);
    *mm.add_vmas() = vma(0x14000, 0x15000, images::VMA_FILE_PRIVATE, PROT_READ, 0, cut);
    images::Vma changed = vma(0x15000, 0x16000, images::VMA_FILE_PRIVATE, PROT_READ, 0, BT_TARGET_PATH);
    changed.set_ino(1);  // not the inode the file has now
    *mm.add_vmas() = changed;
    images::Vma deleted = vma(0x16000, 0x17000, images::VMA_FILE_PRIVATE, PROT_READ, 0, BT_TARGET_PATH);
    deleted.set_file_deleted(true);
    *mm.add_vmas() = deleted;
    auto mem = ProcessMemory::create(mm, write_pages(tmp), "mm-1.img");
    REQUIRE(mem);
    std::vector<std::string> warnings;
    mem->open_files(warnings);  // must not block on the FIFO
    std::string all;
    for (const auto& w : warnings)
        all += w + "\n";
    INFO(all);
    REQUIRE(warnings.size() == 5);  // fifo, /dev/zero, missing, cut, changed; text is silently skipped
    REQUIRE(all.find("fifo: not a regular file") != std::string::npos);
    REQUIRE(all.find("/dev/zero: not a regular file") != std::string::npos);
    REQUIRE(all.find("missing: No such file") != std::string::npos);
    REQUIRE(all.find("cut: ") != std::string::npos);
    REQUIRE(all.find("may have changed") != std::string::npos);
    for (size_t i = 0; i < 5; i++)
        REQUIRE(mem->file_fd(i) == -1);
    REQUIRE(mem->file_fd(5) >= 0);   // changed, but used
    REQUIRE(mem->file_fd(6) == -1);  // deleted: the name is someone else's now
}

TEST_CASE("memory: read_page faults where the process would have") {
    test::TempDir tmp;
    images::MmInfo mm = dso_layout();
    *mm.mutable_vmas(4) = vma(0x405000, 0x406000, images::VMA_ANON_PRIVATE, PROT_NONE);  // a guard page
    auto mem = ProcessMemory::create(mm, write_pages(tmp), "mm-1.img");
    REQUIRE(mem);
    std::string page(4096, 'x');
    REQUIRE(mem->read_page(kStack + 0xf000, page.data()));
    REQUIRE(page == std::string(4096, 'Q'));
    REQUIRE(mem->read_page(kStack, page.data()));  // never touched: zeros
    REQUIRE(page == std::string(4096, '\0'));
    auto hole = mem->read_page(0x403000, page.data());
    REQUIRE(!hole);
    REQUIRE(hole.error().err() == EFAULT);
    REQUIRE(!mem->read_page(0x405000, page.data()));
    REQUIRE(!mem->read_page(0, page.data()));
}

TEST_CASE("plan: one file range per ELF object, from its bias") {
    test::TempDir tmp;
    auto mem = ProcessMemory::create(dso_layout(), write_pages(tmp), "mm-1.img");
    REQUIRE(mem);
    std::vector<std::string> warnings;
    mem->open_files(warnings);
    CoreThread t;
    t.tid = 1;
    CoreLayout layout = plan_core_layout(*mem, 1, "x", {t});
    REQUIRE(layout.threads.size() == 1);
    REQUIRE(layout.pid == 1);
    // Text and rodata at bias 0x400000; the data segment (other bias) and the mapping
    // whose offset 0 would land under an anonymous VMA get no range.
    REQUIRE(layout.files.size() == 1);
    REQUIRE(layout.files[0].vaddr == 0x400000);
    REQUIRE(layout.files[0].size == 0x3000);
    REQUIRE(layout.files[0].prot == (PROT_READ | PROT_EXEC));
    REQUIRE(layout.files[0].fd == mem->file_fd(0));
    // No stack in the core: the unwinder reads it from the images.
    REQUIRE(layout.memory.empty());
}

TEST_CASE("plan: the vDSO goes into the core when its bytes are known") {
    test::TempDir tmp;
    images::MmInfo mm = dso_layout();
    *mm.add_vmas() = vma(0x7ffff7fc0000, 0x7ffff7fc2000, images::VMA_VDSO, PROT_READ | PROT_EXEC, 0, "[vdso]");
    auto mem = ProcessMemory::create(mm, write_pages(tmp), "mm-1.img");
    REQUIRE(mem);
    size_t vdso = mem->vmas().size() - 1;
    REQUIRE(plan_core_layout(*mem, 1, "x", {CoreThread{}}).memory.empty());  // no pages, no stand-in
    mem->set_fallback(vdso, std::string(0x2000, 'V'));
    REQUIRE(mem->has_fallback(vdso));
    CoreLayout layout = plan_core_layout(*mem, 1, "x", {CoreThread{}});
    REQUIRE(layout.memory.size() == 1);
    REQUIRE(layout.memory[0].vaddr == 0x7ffff7fc0000);
    REQUIRE(layout.memory[0].size == 0x2000);
    std::string page(4096, 'x');
    REQUIRE(mem->read_page(0x7ffff7fc1000, page.data()));
    REQUIRE(page == std::string(4096, 'V'));

    // A "vDSO" of a gigabyte is not copied anywhere.
    images::MmInfo big = dso_layout();
    *big.add_vmas() = vma(0x7fff00000000, 0x7fff40000000, images::VMA_VDSO, PROT_READ, 0, "[vdso]");
    auto mem2 = ProcessMemory::create(big, write_pages(tmp), "mm-1.img");
    REQUIRE(mem2);
    mem2->set_fallback(mem2->vmas().size() - 1, "");
    REQUIRE(plan_core_layout(*mem2, 1, "x", {CoreThread{}}).memory.empty());
}

TEST_CASE("elf check: well-formed, not ELF, and malformed files") {
    test::TempDir tmp;
    auto check = [](const std::string& path) {
        UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        return check_elf_for_libunwind(fd.get(), path);
    };
    auto good = check(BT_TARGET_PATH);
    INFO((good ? std::string() : good.error().str()));
    REQUIRE(good);
    REQUIRE(*good);
    auto self = check("/proc/self/exe");
    REQUIRE(self);
    REQUIRE(*self);

    test::write_file(tmp.file("text"), "#!/bin/sh\n");
    auto text = check(tmp.file("text"));
    REQUIRE(text);
    REQUIRE(!*text);

    // Patches of the real binary, each breaking one thing libunwind relies on.
    std::string orig = test::read_file(BT_TARGET_PATH);
    Elf64_Ehdr eh;
    std::memcpy(&eh, orig.data(), sizeof(eh));
    auto shdr = [&](std::string& img, size_t i) { return reinterpret_cast<Elf64_Shdr*>(img.data() + eh.e_shoff) + i; };
    size_t symtab = 0;
    for (size_t i = 0; i < eh.e_shnum; i++)
        if (shdr(orig, i)->sh_type == SHT_SYMTAB)
            symtab = i;
    REQUIRE(symtab != 0);

    auto patched = [&](const std::string& name, auto&& patch) {
        std::string img = orig;
        patch(img);
        test::write_file(tmp.file(name), img);
        auto r = check(tmp.file(name));
        INFO(name);
        REQUIRE(!r);
        return r.error().str();
    };
    REQUIRE(patched("entsize0", [&](std::string& img) { shdr(img, symtab)->sh_entsize = 0; }).find("entries") !=
            std::string::npos);
    REQUIRE(patched("stname", [&](std::string& img) {
                auto* s = shdr(img, symtab);
                auto* sym = reinterpret_cast<Elf64_Sym*>(img.data() + s->sh_offset) + 1;
                sym->st_name = 0x7fffffff;
            }).find("past the table") != std::string::npos);
    REQUIRE(patched("shname", [&](std::string& img) { shdr(img, 1)->sh_name = 0x7fffffff; }).find("name") !=
            std::string::npos);
    REQUIRE(patched("strtab", [&](std::string& img) {
                auto* str = shdr(img, shdr(img, symtab)->sh_link);
                img[str->sh_offset + str->sh_size - 1] = 'x';
            }).find("NUL") != std::string::npos);
    REQUIRE(patched("shoff", [&](std::string& img) {
                reinterpret_cast<Elf64_Ehdr*>(img.data())->e_shoff = img.size() - 10;
            }).find("outside") != std::string::npos);
    REQUIRE(patched("dynamic", [&](std::string& img) {
                auto* e = reinterpret_cast<Elf64_Ehdr*>(img.data());
                auto* ph = reinterpret_cast<Elf64_Phdr*>(img.data() + e->e_phoff);
                for (size_t i = 0; i < e->e_phnum; i++) {
                    if (ph[i].p_type != PT_DYNAMIC)
                        continue;
                    auto* d = reinterpret_cast<Elf64_Dyn*>(img.data() + ph[i].p_offset);
                    for (size_t k = 0; k < ph[i].p_filesz / sizeof(Elf64_Dyn); k++)
                        d[k].d_tag = DT_DEBUG;
                }
            }).find("DT_NULL") != std::string::npos);
    REQUIRE(!patched("cut", [&](std::string& img) { img.resize(0x800); }).empty());
    REQUIRE(patched("core", [&](std::string& img) { reinterpret_cast<Elf64_Ehdr*>(img.data())->e_type = ET_CORE; })
                .find("neither") != std::string::npos);
    REQUIRE(patched("arm", [&](std::string& img) { reinterpret_cast<Elf64_Ehdr*>(img.data())->e_machine = EM_AARCH64; })
                .find("x86-64") != std::string::npos);
}
