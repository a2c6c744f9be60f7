#include "criu/backtrace/synthetic_core.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/procfs.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "images/image_io.h"

namespace criu {
namespace {

constexpr uint64_t kPage = 4096;
// Memory is copied into the core through a buffer of this size.
constexpr size_t kCopyChunk = 1 << 20;

static_assert(sizeof(elf_gregset_t) == sizeof(user_regs_struct),
              "NT_PRSTATUS pr_reg is the ptrace register block");

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

uint32_t pf_flags(uint32_t prot) {
    uint32_t f = 0;
    if (prot & PROT_READ)
        f |= PF_R;
    if (prot & PROT_WRITE)
        f |= PF_W;
    if (prot & PROT_EXEC)
        f |= PF_X;
    return f;
}

void append_note(std::string& out, uint32_t type, const void* desc, size_t desc_size) {
    static const char kName[] = "CORE";
    Elf64_Nhdr h{};
    h.n_namesz = sizeof(kName);
    h.n_descsz = static_cast<uint32_t>(desc_size);
    h.n_type = type;
    out.append(reinterpret_cast<const char*>(&h), sizeof(h));
    // Name and descriptor are each padded to 4 bytes, as the kernel writes them.
    out.append(kName, sizeof(kName));
    out.resize(align_up(out.size(), 4), '\0');
    out.append(static_cast<const char*>(desc), desc_size);
    out.resize(align_up(out.size(), 4), '\0');
}

std::string build_notes(const CoreLayout& layout) {
    std::string notes;
    for (const CoreThread& t : layout.threads) {
        elf_prstatus st;
        std::memset(&st, 0, sizeof(st));
        // _UCD_get_pid reports pr_pid; a core of the kernel puts the thread id there.
        st.pr_pid = t.tid;
        st.pr_pgrp = layout.pid;
        std::memcpy(&st.pr_reg, &t.regs, sizeof(st.pr_reg));
        append_note(notes, NT_PRSTATUS, &st, sizeof(st));
    }
    // NT_PRPSINFO goes last on purpose: some libunwind versions' note walkers stop
    // before a note that ends exactly at the end of the segment, and would drop the
    // last thread if its NT_PRSTATUS came last.
    elf_prpsinfo ps;
    std::memset(&ps, 0, sizeof(ps));
    ps.pr_pid = layout.pid;
    std::strncpy(ps.pr_fname, layout.comm.c_str(), sizeof(ps.pr_fname) - 1);
    append_note(notes, NT_PRPSINFO, &ps, sizeof(ps));
    return notes;
}

Status check_range(uint64_t vaddr, uint64_t size, const char* what, size_t i) {
    if (size == 0 || vaddr % kPage || size % kPage || vaddr + size < vaddr)
        return failf(EINVAL, "core layout: {} range {} [{:#x}, +{:#x}) is empty, unaligned or wraps", what, i,
                     vaddr, size);
    return {};
}

}  // namespace

Expected<SyntheticCore> SyntheticCore::create(const CoreLayout& layout, const ReadMemoryFn& read) {
    if (layout.threads.empty())
        return fail(EINVAL, "core layout: no thread to unwind");
    size_t nr_segments = 1 + layout.memory.size() + layout.files.size();
    if (nr_segments > kMaxCoreSegments)
        return failf(E2BIG, "core layout: {} segments, at most {} fit an ELF core", nr_segments, kMaxCoreSegments);
    uint64_t memory_bytes = 0;
    for (size_t i = 0; i < layout.memory.size(); i++) {
        TRY_VOID(check_range(layout.memory[i].vaddr, layout.memory[i].size, "memory", i));
        memory_bytes += layout.memory[i].size;
    }
    if (memory_bytes > kMaxCoreMemoryBytes)
        return failf(E2BIG, "core layout: {} bytes of memory, at most {} allowed", memory_bytes, kMaxCoreMemoryBytes);
    for (size_t i = 0; i < layout.files.size(); i++) {
        TRY_VOID(check_range(layout.files[i].vaddr, layout.files[i].size, "file", i));
        if (layout.files[i].fd < 0)
            return failf(EINVAL, "core layout: file range {} has no file", i);
    }

    int raw = memfd_create("criu-backtrace-core", MFD_CLOEXEC);
    if (raw < 0)
        return fail_errno("memfd_create for the synthesized core");
    SyntheticCore core(UniqueFd(raw), fmt::format("/proc/self/fd/{}", raw));

    std::string notes = build_notes(layout);
    uint64_t notes_off = sizeof(Elf64_Ehdr) + nr_segments * sizeof(Elf64_Phdr);
    // Memory data starts page aligned: libunwind mmap()s a segment at its p_offset
    // when it looks for an ELF image in it (the vDSO), and mmap wants page alignment.
    uint64_t data_off = align_up(notes_off + notes.size(), kPage);

    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
    eh.e_type = ET_CORE;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(nr_segments);
    eh.e_shentsize = sizeof(Elf64_Shdr);

    std::vector<Elf64_Phdr> phdrs;
    phdrs.reserve(nr_segments);
    Elf64_Phdr note{};
    note.p_type = PT_NOTE;
    note.p_offset = notes_off;
    note.p_filesz = notes.size();
    note.p_align = 4;
    phdrs.push_back(note);

    // Memory segments come before file segments: libunwind takes the first segment
    // holding an address, and bytes from the images are the process's real state.
    std::vector<uint64_t> memory_offsets;
    uint64_t off = data_off;
    for (const CoreMemoryRange& m : layout.memory) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = pf_flags(m.prot);
        ph.p_offset = off;
        ph.p_vaddr = m.vaddr;
        ph.p_filesz = m.size;
        ph.p_memsz = m.size;
        ph.p_align = kPage;
        phdrs.push_back(ph);
        memory_offsets.push_back(off);
        off += m.size;
    }
    core.file_phdr_base_ = phdrs.size();
    for (const CoreFileRange& f : layout.files) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = pf_flags(f.prot);
        ph.p_offset = 0;
        ph.p_vaddr = f.vaddr;
        ph.p_filesz = 0;  // the bytes are the backing file's
        ph.p_memsz = f.size;
        ph.p_align = kPage;
        phdrs.push_back(ph);
    }

    std::string head(reinterpret_cast<const char*>(&eh), sizeof(eh));
    head.append(reinterpret_cast<const char*>(phdrs.data()), phdrs.size() * sizeof(Elf64_Phdr));
    head += notes;
    TRY_VOID(write_full(core.fd(), head.data(), head.size(), "synthesized core"));

    std::vector<char> buf(kCopyChunk);
    for (size_t i = 0; i < layout.memory.size(); i++) {
        const CoreMemoryRange& m = layout.memory[i];
        for (uint64_t done = 0; done < m.size;) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, m.size - done));
            TRY_VOID_CTX(read(m.vaddr + done, n, buf.data()), "reading memory at {:#x} for the core", m.vaddr + done);
            uint64_t at = memory_offsets[i] + done;
            if (lseek(core.fd(), static_cast<off_t>(at), SEEK_SET) < 0)
                return fail_errno("lseek in the synthesized core");
            TRY_VOID(write_full(core.fd(), buf.data(), n, "synthesized core"));
            done += n;
        }
    }
    core.size_ = std::max<uint64_t>(off, head.size());
    if (ftruncate(core.fd(), static_cast<off_t>(core.size_)) < 0)
        return fail_errno("ftruncate of the synthesized core");
    return core;
}

}  // namespace criu
