// The ELF core synthesized for libunwind-coredump: read back field by field, and
// opened by libunwind itself.
#include <catch2/catch.hpp>

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <sys/reg.h>
#include <unistd.h>

#include <cstring>

#include "criu/backtrace/core_unwinder.h"
#include "criu/backtrace/synthetic_core.h"
#include "criu/core/unique_fd.h"

using namespace criu;

namespace {

std::string contents(const SyntheticCore& core) {
    std::string s(core.size(), '\0');
    REQUIRE(pread(core.fd(), s.data(), s.size(), 0) == static_cast<ssize_t>(s.size()));
    return s;
}

// Memory that reads as its own address's low byte, so each page's origin is visible.
Status fill_pattern(uint64_t vaddr, size_t len, char* dst) {
    for (size_t i = 0; i < len; i++)
        dst[i] = static_cast<char>((vaddr + i) >> 12);
    return {};
}

CoreLayout two_threads(int file_fd) {
    CoreLayout l;
    l.pid = 100;
    l.comm = "a-very-long-command-name";
    CoreThread t1;
    t1.tid = 100;
    t1.regs.rip = 0x401000;
    t1.regs.rsp = 0x7000;
    CoreThread t2;
    t2.tid = 101;
    t2.regs.rip = 0x401010;
    t2.regs.rsp = 0x9000;
    l.threads = {t1, t2};
    l.memory = {CoreMemoryRange{0x7000, 0x1000, PROT_READ | PROT_WRITE},
                CoreMemoryRange{0x9000, 0x3000, PROT_READ | PROT_WRITE | PROT_EXEC}};
    l.files = {CoreFileRange{0x400000, 0x2000, PROT_READ | PROT_EXEC, file_fd}};
    return l;
}

}  // namespace

TEST_CASE("synthetic core: header, segments, notes and memory read back") {
    UniqueFd self(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    REQUIRE(self);
    CoreLayout layout = two_threads(self.get());
    auto core = SyntheticCore::create(layout, fill_pattern);
    INFO((core ? std::string() : core.error().str()));
    REQUIRE(core);
    REQUIRE(core->path() == "/proc/self/fd/" + std::to_string(core->fd()));
    std::string img = contents(*core);

    Elf64_Ehdr eh;
    std::memcpy(&eh, img.data(), sizeof(eh));
    REQUIRE(std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0);
    REQUIRE(eh.e_ident[EI_CLASS] == ELFCLASS64);
    REQUIRE(eh.e_type == ET_CORE);
    REQUIRE(eh.e_machine == EM_X86_64);
    REQUIRE(eh.e_phnum == 4);  // note + 2 memory + 1 file

    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    std::memcpy(ph.data(), img.data() + eh.e_phoff, ph.size() * sizeof(Elf64_Phdr));
    REQUIRE(ph[0].p_type == PT_NOTE);
    REQUIRE(ph[1].p_type == PT_LOAD);
    REQUIRE(ph[1].p_vaddr == 0x7000);
    REQUIRE(ph[1].p_flags == (PF_R | PF_W));
    REQUIRE(ph[1].p_offset % 4096 == 0);
    REQUIRE(ph[2].p_vaddr == 0x9000);
    REQUIRE(ph[2].p_filesz == 0x3000);
    REQUIRE(ph[2].p_flags == (PF_R | PF_W | PF_X));
    REQUIRE(core->file_segment_index(0) == 3);
    REQUIRE(ph[3].p_vaddr == 0x400000);
    REQUIRE(ph[3].p_filesz == 0);
    REQUIRE(ph[3].p_memsz == 0x2000);

    // Memory bytes are where the segments say.
    REQUIRE(static_cast<unsigned char>(img[ph[2].p_offset]) == 0x09);
    REQUIRE(static_cast<unsigned char>(img[ph[2].p_offset + 0x2fff]) == 0x0b);

    // Notes: NT_PRSTATUS per thread in order, NT_PRPSINFO last.
    std::vector<std::pair<uint32_t, std::string>> notes;
    for (size_t off = ph[0].p_offset; off < ph[0].p_offset + ph[0].p_filesz;) {
        Elf64_Nhdr nh;
        std::memcpy(&nh, img.data() + off, sizeof(nh));
        off += sizeof(nh);
        REQUIRE(std::string(img.data() + off) == "CORE");
        off += (nh.n_namesz + 3) & ~3u;
        notes.emplace_back(nh.n_type, img.substr(off, nh.n_descsz));
        off += (nh.n_descsz + 3) & ~3u;
    }
    REQUIRE(notes.size() == 3);
    REQUIRE(notes[0].first == NT_PRSTATUS);
    REQUIRE(notes[0].second.size() == sizeof(elf_prstatus));
    elf_prstatus st;
    std::memcpy(&st, notes[1].second.data(), sizeof(st));
    REQUIRE(st.pr_pid == 101);
    REQUIRE(st.pr_reg[RIP] == 0x401010);
    REQUIRE(st.pr_reg[RSP] == 0x9000);
    REQUIRE(notes[2].first == NT_PRPSINFO);
    elf_prpsinfo ps;
    std::memcpy(&ps, notes[2].second.data(), sizeof(ps));
    REQUIRE(ps.pr_pid == 100);
    REQUIRE(std::string(ps.pr_fname) == "a-very-long-com");  // 15 characters and a NUL
}

TEST_CASE("synthetic core: libunwind-coredump reads it, with every thread") {
    UniqueFd self(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    CoreLayout layout = two_threads(self.get());
    auto core = SyntheticCore::create(layout, fill_pattern);
    REQUIRE(core);
    auto unwinder = CoreUnwinder::open(*core, layout, [](uint64_t page, char* dst) { return fill_pattern(page, 4096, dst); });
    INFO((unwinder ? std::string() : unwinder.error().str()));
    REQUIRE(unwinder);
    REQUIRE(unwinder->thread_count() == 2);
    // The registers are made up: whatever the unwinder makes of them, it reports frame 0
    // at the thread's rip and stops without crashing.
    UnwoundThread t = unwinder->unwind(1, 16);
    REQUIRE(!t.frames.empty());
    REQUIRE(t.frames[0].ip == 0x401010);
    REQUIRE(t.frames[0].sp == 0x9000);
    REQUIRE(!unwinder->unwind(2, 16).error.empty());
    REQUIRE(!unwinder->unwind(-1, 16).error.empty());
}

TEST_CASE("synthetic core: bad layouts are refused before anything is written") {
    UniqueFd self(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    CoreLayout layout = two_threads(self.get());

    CoreLayout none = layout;
    none.threads.clear();
    REQUIRE(!SyntheticCore::create(none, fill_pattern));

    CoreLayout unaligned = layout;
    unaligned.memory[0].vaddr = 0x7001;
    REQUIRE(!SyntheticCore::create(unaligned, fill_pattern));

    CoreLayout wraps = layout;
    wraps.memory[0].vaddr = ~uint64_t(0xfff);
    wraps.memory[0].size = 0x2000;
    REQUIRE(!SyntheticCore::create(wraps, fill_pattern));

    CoreLayout huge = layout;
    huge.memory[1].size = kMaxCoreMemoryBytes;
    auto r = SyntheticCore::create(huge, fill_pattern);
    REQUIRE(!r);
    REQUIRE(r.error().err() == E2BIG);

    CoreLayout no_fd = layout;
    no_fd.files[0].fd = -1;
    REQUIRE(!SyntheticCore::create(no_fd, fill_pattern));

    CoreLayout too_many = layout;
    too_many.memory.assign(kMaxCoreSegments, CoreMemoryRange{0x7000, 0x1000, PROT_READ});
    REQUIRE(!SyntheticCore::create(too_many, fill_pattern));
}

TEST_CASE("synthetic core: a failing memory read fails the core, naming the address") {
    UniqueFd self(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    CoreLayout layout = two_threads(self.get());
    auto r = SyntheticCore::create(layout, [](uint64_t vaddr, size_t, char*) -> Status {
        if (vaddr == 0x9000)
            return fail(EIO, "page store broke");
        return {};
    });
    REQUIRE(!r);
    REQUIRE(r.error().str().find("0x9000") != std::string::npos);
    REQUIRE(r.error().str().find("page store broke") != std::string::npos);
}
