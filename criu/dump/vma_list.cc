#include "criu/dump/vma_list.h"

#include <sys/mman.h>
#include <sys/sysmacros.h>

#include <algorithm>

namespace criu {

namespace {

std::string where(pid_t pid, const MapsEntry& m) {
    return fmt::format("pid {} vma {:x}-{:x} {}", pid, m.start, m.end, m.path.empty() ? "[anon]" : m.path);
}

uint32_t madvise_bits(const MapsEntry& m) {
    // Bit numbers as documented in mm.proto.
    uint32_t b = 0;
    if (m.has_flag("dc"))
        b |= 1u << 0;
    if (m.has_flag("dd"))
        b |= 1u << 1;
    if (m.has_flag("hg"))
        b |= 1u << 2;
    if (m.has_flag("nh"))
        b |= 1u << 3;
    if (m.has_flag("wf"))
        b |= 1u << 4;
    if (m.has_flag("mg"))
        b |= 1u << 5;
    return b;
}

bool is_anon_kind(images::VmaKind k) {
    return k == images::VMA_ANON_PRIVATE || k == images::VMA_ANON_SHARED || k == images::VMA_HEAP ||
           k == images::VMA_STACK;
}

}  // namespace

Expected<DumpVma> classify_vma(pid_t pid, const MapsEntry& m) {
    DumpVma d;
    d.maps = m;
    images::Vma& v = d.vma;
    const std::string& p = m.path;
    images::VmaKind kind;
    bool special = false;  // kernel-provided mapping: never VM_IO-refused
    if (p == "[heap]") {
        kind = images::VMA_HEAP;
    } else if (p == "[stack]") {
        kind = images::VMA_STACK;
    } else if (p == "[vdso]") {
        kind = images::VMA_VDSO;
        special = true;
    } else if (p == "[vvar]") {
        kind = images::VMA_VVAR;
        special = true;
    } else if (p == "[vvar_vclock]") {
        kind = images::VMA_VVAR_VCLOCK;
        special = true;
    } else if (p == "[vsyscall]") {
        kind = images::VMA_VSYSCALL;
        special = true;
    } else if (p.empty() || p.starts_with("[anon:")) {
        // "[anon:name]" is a PR_SET_VMA_ANON_NAME label on private anonymous memory.
        kind = m.shared ? images::VMA_ANON_SHARED : images::VMA_ANON_PRIVATE;
    } else if (p.starts_with("[anon_shmem:")) {
        kind = images::VMA_ANON_SHARED;
    } else if (p == "/dev/zero" && m.shared && m.deleted) {
        // MAP_SHARED|MAP_ANONYMOUS shows as the shmem file "/dev/zero (deleted)" (KERNEL-NOTES 3).
        kind = images::VMA_ANON_SHARED;
    } else if (p == "/dev/zero" && !m.shared) {
        kind = images::VMA_ANON_PRIVATE;  // a private mapping of /dev/zero is plain anonymous memory
    } else if (p.starts_with("/memfd:")) {
        kind = m.shared ? images::VMA_MEMFD_SHARED : images::VMA_MEMFD_PRIVATE;
    } else if (p.starts_with("/SYSV") && m.deleted) {
        // The inode number of a segment's file is its id (ipc/shm.c newseg). Whether its IPC
        // namespace can be dumped is for preflight_sysv_ipc().
        kind = images::VMA_SYSV_SHM;
    } else if (p.starts_with("/")) {
        kind = m.shared ? images::VMA_FILE_SHARED : images::VMA_FILE_PRIVATE;
    } else {
        return failf(ENOTSUP, "{}: unknown kind of mapping", where(pid, m));
    }
    if (!special && (m.has_flag("io") || m.has_flag("pf")))
        return failf(ENOTSUP, "{}: device memory (VM_IO/VM_PFNMAP) cannot be dumped", where(pid, m));
    if (m.has_flag("ht"))
        return failf(ENOTSUP, "{}: hugetlbfs memory cannot be dumped yet", where(pid, m));

    v.set_start(m.start);
    v.set_end(m.end);
    v.set_pgoff(m.pgoff);
    v.set_prot((m.read ? PROT_READ : 0) | (m.write ? PROT_WRITE : 0) | (m.exec ? PROT_EXEC : 0));
    uint32_t flags = m.shared ? MAP_SHARED : MAP_PRIVATE;
    if (is_anon_kind(kind))
        flags |= MAP_ANONYMOUS;
    if (m.has_flag("gd"))
        flags |= MAP_GROWSDOWN;
    v.set_flags(flags);
    v.set_kind(kind);
    if (!p.empty() && p[0] == '/' && kind != images::VMA_ANON_SHARED && kind != images::VMA_ANON_PRIVATE)
        v.set_path(p);
    v.set_dev(makedev(m.dev_major, m.dev_minor));
    v.set_ino(m.ino);
    v.set_file_deleted(m.deleted && kind != images::VMA_ANON_SHARED);
    v.set_madvise(madvise_bits(m));
    if (kind == images::VMA_ANON_SHARED || kind == images::VMA_MEMFD_SHARED || kind == images::VMA_MEMFD_PRIVATE ||
        kind == images::VMA_SYSV_SHM)
        v.set_shmid(m.ino);
    if (kind == images::VMA_SYSV_SHM) {
        v.clear_path();  // not a file anyone can open
        v.set_file_deleted(false);
        v.set_sysv_may_write(m.has_flag("mw"));
    }

    switch (kind) {
    case images::VMA_ANON_PRIVATE:
    case images::VMA_HEAP:
    case images::VMA_STACK:
        d.pages = PagePolicy::Private;
        d.zero_pages_are_holes = true;
        break;
    case images::VMA_FILE_PRIVATE:
        d.pages = m.deleted ? PagePolicy::AllPrivate : PagePolicy::Private;
        break;
    case images::VMA_MEMFD_PRIVATE:
        d.pages = PagePolicy::AllPrivate;
        break;
    case images::VMA_ANON_SHARED:
    case images::VMA_MEMFD_SHARED:
        d.pages = PagePolicy::Shared;
        d.zero_pages_are_holes = true;
        break;
    default:
        d.pages = PagePolicy::None;
        break;
    }
    return d;
}

Expected<std::vector<DumpVma>> collect_vmas(pid_t pid) {
    std::vector<MapsEntry> maps = TRY(read_smaps(pid));
    std::vector<DumpVma> out;
    out.reserve(maps.size());
    for (const auto& m : maps)
        out.push_back(TRY(classify_vma(pid, m)));
    return out;
}

namespace {

bool same_line(const MapsEntry& a, const MapsEntry& b) {
    return a.start == b.start && a.end == b.end && a.read == b.read && a.write == b.write && a.exec == b.exec &&
           a.shared == b.shared && a.pgoff == b.pgoff && a.dev_major == b.dev_major && a.dev_minor == b.dev_minor &&
           a.ino == b.ino && a.path == b.path && a.deleted == b.deleted;
}

}  // namespace

Expected<std::vector<DumpVma>> collect_vmas_reusing(pid_t pid, const std::vector<DumpVma>& known, bool* reused) {
    *reused = false;
    std::vector<MapsEntry> now = TRY(read_maps(pid));
    bool same = now.size() == known.size();
    for (size_t i = 0; same && i < now.size(); ++i)
        same = same_line(now[i], known[i].maps);
    if (!same)
        return collect_vmas(pid);
    *reused = true;
    return known;
}

images::VdsoLayout vdso_layout(const std::vector<DumpVma>& vmas) {
    images::VdsoLayout layout;
    uint64_t base = UINT64_MAX;
    for (const auto& v : vmas) {
        auto k = v.vma.kind();
        if (k == images::VMA_VDSO || k == images::VMA_VVAR || k == images::VMA_VVAR_VCLOCK)
            base = std::min(base, v.vma.start());
    }
    for (const auto& v : vmas) {
        auto k = v.vma.kind();
        if (k != images::VMA_VDSO && k != images::VMA_VVAR && k != images::VMA_VVAR_VCLOCK)
            continue;
        auto* part = layout.add_parts();
        part->set_name(v.maps.path);
        part->set_offset(v.vma.start() - base);
        part->set_size(v.vma.end() - v.vma.start());
    }
    return layout;
}

}  // namespace criu
