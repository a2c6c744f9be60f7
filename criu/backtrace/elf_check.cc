#include "criu/backtrace/elf_check.h"

#include <elf.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "images/image_io.h"

namespace criu {
namespace {

// Symbols are checked in slices of this many bytes, so a huge .symtab costs no memory.
constexpr size_t kSymbolChunk = 1 << 20;
// libunwind reads the .eh_frame_hdr header (version, three encodings and two encoded
// pointers of up to 8 bytes) without looking at the segment's size.
constexpr uint64_t kEhFrameHdrRead = 20;

bool inside(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

class ElfFile {
public:
    ElfFile(int fd, const std::string& path, uint64_t size) : fd_(fd), path_(path), size_(size) {}

    template <class... A>
    std::unexpected<Error> bad(fmt::format_string<A...> f, A&&... a) const {
        return fail(ENOEXEC, fmt::format("{}: {}", path_, fmt::format(f, std::forward<A>(a)...)));
    }

    // Reads [off, off + len), which must lie inside the file.
    Status read(uint64_t off, void* dst, uint64_t len, const char* what) const {
        if (!inside(off, len, size_))
            return bad("{} at {:#x}+{:#x} is outside the file ({} bytes)", what, off, len, size_);
        size_t got = TRY(pread_full(fd_, dst, len, off, path_));
        if (got != len)
            return bad("{} is cut short: the file shrank", what);
        return {};
    }

    uint64_t size() const { return size_; }

private:
    int fd_;
    const std::string& path_;
    uint64_t size_;
};

Status check_segments(const ElfFile& f, const Elf64_Ehdr& eh) {
    if (eh.e_phnum == 0)
        return {};
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return f.bad("e_phentsize {} is not {}", eh.e_phentsize, sizeof(Elf64_Phdr));
    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    TRY_VOID(f.read(eh.e_phoff, ph.data(), ph.size() * sizeof(Elf64_Phdr), "program headers"));
    for (size_t i = 0; i < ph.size(); i++) {
        const Elf64_Phdr& p = ph[i];
        if (p.p_type != PT_LOAD && p.p_type != PT_DYNAMIC && p.p_type != PT_GNU_EH_FRAME)
            continue;
        if (!inside(p.p_offset, p.p_filesz, f.size()))
            return f.bad("segment {} lies outside the file", i);
        if (p.p_type == PT_GNU_EH_FRAME && !inside(p.p_offset, kEhFrameHdrRead, f.size()))
            return f.bad(".eh_frame_hdr too close to the end of the file");
        if (p.p_type == PT_DYNAMIC) {
            // libunwind walks the dynamic section to DT_NULL with no other bound.
            if (p.p_filesz > (64u << 20))
                return f.bad("dynamic segment of {} bytes", p.p_filesz);
            std::vector<Elf64_Dyn> dyn(p.p_filesz / sizeof(Elf64_Dyn));
            TRY_VOID(f.read(p.p_offset, dyn.data(), dyn.size() * sizeof(Elf64_Dyn), "dynamic segment"));
            if (std::none_of(dyn.begin(), dyn.end(), [](const Elf64_Dyn& d) { return d.d_tag == DT_NULL; }))
                return f.bad("dynamic segment has no DT_NULL");
        }
    }
    return {};
}

// A string table whose last byte is NUL: every string starting inside it ends inside it.
Expected<uint64_t> check_string_table(const ElfFile& f, const Elf64_Shdr& s, size_t index) {
    if (s.sh_type != SHT_STRTAB)
        return f.bad("section {} is linked as a string table but is not one", index);
    if (s.sh_size == 0)
        return uint64_t(0);
    char last = 1;
    TRY_VOID(f.read(s.sh_offset + s.sh_size - 1, &last, 1, "string table"));
    if (last != '\0')
        return f.bad("string table {} is not NUL-terminated", index);
    return s.sh_size;
}

Status check_symbols(const ElfFile& f, const std::vector<Elf64_Shdr>& sh, size_t index) {
    const Elf64_Shdr& s = sh[index];
    if (s.sh_entsize != sizeof(Elf64_Sym) || s.sh_size % sizeof(Elf64_Sym))
        return f.bad("symbol table {} has entries of {} bytes", index, s.sh_entsize);
    if (s.sh_link >= sh.size())
        return f.bad("symbol table {} links to section {}", index, s.sh_link);
    uint64_t strings = TRY(check_string_table(f, sh[s.sh_link], s.sh_link));
    std::vector<Elf64_Sym> syms(kSymbolChunk / sizeof(Elf64_Sym));
    for (uint64_t done = 0; done < s.sh_size;) {
        uint64_t n = std::min<uint64_t>(s.sh_size - done, syms.size() * sizeof(Elf64_Sym));
        TRY_VOID(f.read(s.sh_offset + done, syms.data(), n, "symbol table"));
        for (size_t k = 0; k < n / sizeof(Elf64_Sym); k++)
            if (syms[k].st_name != 0 && syms[k].st_name >= strings)
                return f.bad("symbol {} of table {} names string {:#x} past the table", done / sizeof(Elf64_Sym) + k,
                             index, syms[k].st_name);
        done += n;
    }
    return {};
}

Status check_sections(const ElfFile& f, const Elf64_Ehdr& eh) {
    if (eh.e_shnum == 0)
        return {};
    if (eh.e_shentsize != sizeof(Elf64_Shdr))
        return f.bad("e_shentsize {} is not {}", eh.e_shentsize, sizeof(Elf64_Shdr));
    std::vector<Elf64_Shdr> sh(eh.e_shnum);
    TRY_VOID(f.read(eh.e_shoff, sh.data(), sh.size() * sizeof(Elf64_Shdr), "section headers"));
    // libunwind finds sections by name through the section name table, unchecked.
    if (eh.e_shstrndx == SHN_UNDEF || eh.e_shstrndx >= sh.size())
        return f.bad("section name table index {} of {}", eh.e_shstrndx, sh.size());
    uint64_t names = TRY(check_string_table(f, sh[eh.e_shstrndx], eh.e_shstrndx));
    for (size_t i = 0; i < sh.size(); i++) {
        const Elf64_Shdr& s = sh[i];
        if (s.sh_name != 0 && s.sh_name >= names)
            return f.bad("section {} has its name past the name table", i);
        if (s.sh_type != SHT_NOBITS && s.sh_type != SHT_NULL && !inside(s.sh_offset, s.sh_size, f.size()))
            return f.bad("section {} lies outside the file", i);
    }
    for (size_t i = 0; i < sh.size(); i++) {
        if (sh[i].sh_type == SHT_SYMTAB || sh[i].sh_type == SHT_DYNSYM)
            TRY_VOID(check_symbols(f, sh, i));
        // The debug link's file name is used as a C string, up to its NUL.
        char name[sizeof(".gnu_debuglink")] = {};
        uint64_t name_len = std::min<uint64_t>(sizeof(name) - 1, names - sh[i].sh_name);
        TRY_VOID(f.read(sh[eh.e_shstrndx].sh_offset + sh[i].sh_name, name, name_len, "section name"));
        if (std::strcmp(name, ".gnu_debuglink") == 0 && sh[i].sh_type != SHT_NOBITS) {
            std::string link(sh[i].sh_size, '\0');
            if (sh[i].sh_size > 4096)
                return f.bad(".gnu_debuglink of {} bytes", sh[i].sh_size);
            TRY_VOID(f.read(sh[i].sh_offset, link.data(), link.size(), ".gnu_debuglink"));
            if (link.find('\0') == std::string::npos)
                return f.bad(".gnu_debuglink is not NUL-terminated");
        }
    }
    return {};
}

}  // namespace

Expected<bool> check_elf_for_libunwind(int fd, const std::string& path) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fail_errno("fstat {}", path);
    ElfFile f(fd, path, static_cast<uint64_t>(st.st_size));
    Elf64_Ehdr eh;
    if (f.size() < sizeof(eh))
        return false;
    TRY_VOID(f.read(0, &eh, sizeof(eh), "ELF header"));
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return false;
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return f.bad("not a 64-bit little-endian ELF file");
    // Only code objects: an ELF core (/proc/kcore is one) or a relocatable file was
    // never mapped to run, and an object of another machine has no x86-64 tables.
    if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
        return f.bad("ELF type {} is neither an executable nor a shared object", eh.e_type);
    if (eh.e_machine != EM_X86_64)
        return f.bad("ELF machine {} is not x86-64", eh.e_machine);
    TRY_VOID(check_segments(f, eh));
    TRY_VOID(check_sections(f, eh));
    return true;
}

}  // namespace criu
