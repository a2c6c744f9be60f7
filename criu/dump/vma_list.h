// The memory map of a process as the image records it (mm.proto Vma), plus, for the page
// dumper, which pages of each VMA belong in the image.
#pragma once

#include <sys/types.h>

#include <vector>

#include "criu/core/error.h"
#include "criu/core/proc_parse.h"
#include "proto/inventory.pb.h"
#include "proto/mm.pb.h"

namespace criu {

// Which pages of a VMA go to pages-<pid>.img.
enum class PagePolicy {
    None,         // content comes from elsewhere: shared file, vDSO/vvar, vsyscall
    Private,      // private anon (heap, stack) and private file: present or swapped pages that are
                  // not the zero page and not page cache (PAGE_IS_FILE), i.e. anon and COWed pages
    Shared,       // MAP_SHARED anon or memfd: present pages of the shmem object
    AllPrivate,   // private mapping of a deleted file or memfd: the file will not be there at
                  // restore, so page-cache pages are dumped too
};

struct DumpVma {
    MapsEntry maps;
    images::Vma vma;
    PagePolicy pages = PagePolicy::None;
    // Pages that read as zero may be left out of the image: true for anonymous memory (absent
    // means zero), false for file-backed memory (absent means "from the file").
    bool zero_pages_are_holes = false;
};

// Reads /proc/PID/smaps and classifies every VMA (mm.proto VmaKind, PROT_*, MAP_*, madvise
// bits). Fails naming the pid and the VMA for what cannot be dumped: SysV shm, hugetlbfs,
// device (VM_IO / VM_PFNMAP) mappings and unknown special mappings.
Expected<std::vector<DumpVma>> collect_vmas(pid_t pid);

// The same from /proc/PID/maps, without the page-table walk that makes smaps slow (37 ms for
// 1 GiB populated under load), when `known` (collect_vmas of the same process, taken shortly
// before while it ran) still describes it: every line identical (range, protection, sharing,
// offset, device, inode, path). Then `known` is the answer (its VmFlags-derived fields), and
// `*reused` is set. Otherwise smaps is read as by collect_vmas. The one change a maps line
// cannot show is an madvise() that flips VmFlags of a whole VMA (MADV_DONTFORK, DONTDUMP,
// HUGEPAGE, MERGEABLE, WIPEONFORK) between the two reads: an incremental dump
// reads the known list in its pre-flight, a few ms before the freeze, and accepts that window.
Expected<std::vector<DumpVma>> collect_vmas_reusing(pid_t pid, const std::vector<DumpVma>& known, bool* reused);

// Classifies one smaps entry; exposed for unit tests.
Expected<DumpVma> classify_vma(pid_t pid, const MapsEntry& m);

// The [vvar] / [vvar_vclock] / [vdso] block of the process, as offsets from its start.
images::VdsoLayout vdso_layout(const std::vector<DumpVma>& vmas);

}  // namespace criu
