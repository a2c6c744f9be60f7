// Probes for memory tracking and lazy paging: userfaultfd and the features this
// tool relies on, PAGEMAP_SCAN, and soft-dirty.
//
// Every probe that arms a userfaultfd runs in a forked child: if the kernel took
// the registration but did not resolve the access the way the feature promises,
// the access would block on a fault nobody reads, or the child would get SIGBUS.
// run_isolated() turns either into "absent" instead of hanging the caller.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "criu/core/pagemap_scan.h"
#include "kernel-feature-check/kernel_abi.h"
#include "kernel-feature-check/probe_util.h"

namespace criu::kfc {

namespace {

struct Uffd {
    UniqueFd fd;
    uint64_t features = 0;  // what UFFDIO_API reported back
    bool user_mode_only = false;
};

// userfaultfd() + UFFDIO_API asking for `features`. The API call fails with EINVAL
// when a requested feature is unknown, which is how a feature's absence shows.
Expected<Uffd> open_uffd(uint64_t features) {
    Uffd u;
    u.fd.reset(int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
    if (!u.fd && errno == EPERM) {
        // vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE: kernel faults are
        // refused, user-mode-only uffds are still allowed (5.11+).
        u.fd.reset(int(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | abi::kUffdUserModeOnly)));
        u.user_mode_only = true;
    }
    if (!u.fd)
        return fail_errno("userfaultfd");
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = features;
    if (ioctl(u.fd.get(), UFFDIO_API, &api) < 0)
        return fail_errno("UFFDIO_API features {:#x}", features);
    u.features = api.features;
    return u;
}

Status uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode) {
    uffdio_register reg{};
    reg.range.start = start;
    reg.range.len = len;
    reg.mode = mode;
    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
        return fail_errno("UFFDIO_REGISTER mode {:#x}", mode);
    return {};
}

Expected<uint64_t> pagemap_entry(int pagemap_fd, uint64_t addr) {
    uint64_t e = 0;
    off_t off = off_t(addr / page_size() * sizeof e);
    if (pread(pagemap_fd, &e, sizeof e, off) != sizeof e)
        return fail_errno("pread pagemap at {:#x}", addr);
    return e;
}

Expected<UniqueFd> open_pagemap() {
    UniqueFd fd(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open /proc/self/pagemap");
    return fd;
}

// The regions PAGEMAP_SCAN reports over [start, end), through criu's own walker.
Expected<std::vector<PmPageRegion>> pagemap_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags,
                                                 uint64_t category_mask, uint64_t anyof_mask, uint64_t return_mask) {
    std::vector<PmPageRegion> out;
    TRY_VOID(pagemap_scan_walk(pagemap_fd, start, end, flags, 0, category_mask, anyof_mask, return_mask,
                               [&](uint64_t s, uint64_t e, uint64_t c) { out.push_back(PmPageRegion{s, e, c}); }));
    return out;
}

// Async write-protect scan as the dirty tracker does it: report WRITTEN pages and
// write-protect them again in the same call.
Expected<std::vector<PmPageRegion>> wp_async_scan(int pagemap_fd, const ScopedMapping& m) {
    return pagemap_scan(pagemap_fd, m.addr(), m.addr() + m.size(),
                        kPmScanWpMatching | kPmScanCheckWpAsync, kPageIsWritten, 0,
                        kPageIsWritten);
}

bool is_exactly_page(const std::vector<PmPageRegion>& v, uint64_t addr) {
    return v.size() == 1 && v[0].start == addr && v[0].end == addr + page_size();
}

std::string regions_text(const std::vector<PmPageRegion>& v) {
    std::string s;
    for (const auto& r : v)
        s += fmt::format("{}[{:#x}-{:#x} cat {:#x}]", s.empty() ? "" : " ", r.start, r.end, r.categories);
    return s.empty() ? "none" : s;
}

ProbeResult probe_uffd() {
    return run_isolated([]() -> ProbeResult {
        auto u = open_uffd(0);
        if (!u)
            return no(u.error().str());
        size_t pg = page_size();
        auto m = ScopedMapping::map(2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (!m)
            return no(m.error().str());
        if (auto st = uffd_register(u->fd.get(), m->addr(), m->size(), UFFDIO_REGISTER_MODE_MISSING); !st)
            return no(st.error().str());
        // Fill the missing pages ahead of any fault, as lazy restore does for pages
        // it pushes; then the reads below cannot fault.
        std::vector<uint8_t> src(pg, 0x5a);
        uffdio_copy copy{};
        copy.dst = m->addr();
        copy.src = reinterpret_cast<uintptr_t>(src.data());
        copy.len = pg;
        if (ioctl(u->fd.get(), UFFDIO_COPY, &copy) < 0)
            return no_errno("UFFDIO_COPY");
        uffdio_zeropage zp{};
        zp.range.start = m->addr() + pg;
        zp.range.len = pg;
        if (ioctl(u->fd.get(), UFFDIO_ZEROPAGE, &zp) < 0)
            return no_errno("UFFDIO_ZEROPAGE");
        if (m->data()[0] != 0x5a || m->data()[pg - 1] != 0x5a || m->data()[pg] != 0)
            return no("pages filled by UFFDIO_COPY/ZEROPAGE read back wrong");
        return yes(fmt::format("{}features {}; MISSING register, UFFDIO_COPY and ZEROPAGE work",
                               u->user_mode_only ? "user-mode-only; " : "", hex(u->features)));
    });
}

ProbeResult probe_uffd_wp() {
    return run_isolated([]() -> ProbeResult {
        auto u = open_uffd(abi::kUffdFeaturePagefaultFlagWp);
        if (!u)
            return no(u.error().str());
        auto pm = open_pagemap();
        if (!pm)
            return no(pm.error().str());
        size_t pg = page_size();
        auto m = ScopedMapping::map(pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (!m)
            return no(m.error().str());
        m->data()[0] = 1;  // populate before protecting: the sync mode never writes while protected
        if (auto st = uffd_register(u->fd.get(), m->addr(), pg, UFFDIO_REGISTER_MODE_WP); !st)
            return no(st.error().str());
        uffdio_writeprotect wp{};
        wp.range.start = m->addr();
        wp.range.len = pg;
        wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
        if (ioctl(u->fd.get(), UFFDIO_WRITEPROTECT, &wp) < 0)
            return no_errno("UFFDIO_WRITEPROTECT");
        auto on = pagemap_entry(pm->get(), m->addr());
        wp.mode = 0;
        if (ioctl(u->fd.get(), UFFDIO_WRITEPROTECT, &wp) < 0)
            return no_errno("UFFDIO_WRITEPROTECT (un-protect)");
        auto off = pagemap_entry(pm->get(), m->addr());
        if (!on || !off)
            return no((on ? off.error() : on.error()).str());
        if (!(*on & abi::kPmUffdWp) || (*off & abi::kPmUffdWp))
            return no(fmt::format("pagemap uffd-wp bit did not follow protect/unprotect ({} / {})", hex(*on),
                                  hex(*off)));
        return yes("register WP, protect and unprotect work (pagemap bit 57 follows)");
    });
}

ProbeResult probe_uffd_wp_async() {
    return run_isolated([]() -> ProbeResult {
        auto u = open_uffd(abi::kUffdFeatureWpAsync);
        if (!u)
            return no(u.error().str());
        auto pm = open_pagemap();
        if (!pm)
            return no(pm.error().str());
        size_t pg = page_size();
        auto m = ScopedMapping::map(4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (!m)
            return no(m.error().str());
        memset(m->data(), 1, m->size());
        if (auto st = uffd_register(u->fd.get(), m->addr(), m->size(), UFFDIO_REGISTER_MODE_WP); !st)
            return no(st.error().str());
        // Arm: the first scan reports everything and write-protects it.
        if (auto arm = wp_async_scan(pm->get(), *m); !arm)
            return no("arming: " + arm.error().str());
        m->data()[2 * pg + 7] = 2;  // resolved by the kernel, no fault reaches the uffd
        auto dirty = wp_async_scan(pm->get(), *m);
        if (!dirty)
            return no(dirty.error().str());
        if (!is_exactly_page(*dirty, m->addr() + 2 * pg))
            return no("after writing page 2 the scan returned " + regions_text(*dirty));
        auto again = wp_async_scan(pm->get(), *m);
        if (!again)
            return no(again.error().str());
        if (!again->empty())
            return no("an immediate re-scan was not clean: " + regions_text(*again));
        return yes("write to page 2 of 4 reported exactly, re-scan clean (WP_ASYNC + PAGEMAP_SCAN)");
    });
}

ProbeResult probe_uffd_wp_unpopulated() {
    return run_isolated([]() -> ProbeResult {
        auto u = open_uffd(abi::kUffdFeatureWpAsync | abi::kUffdFeatureWpUnpopulated);
        if (!u)
            return no(u.error().str());
        auto pm = open_pagemap();
        if (!pm)
            return no(pm.error().str());
        size_t pg = page_size();
        auto m = ScopedMapping::map(4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (!m)
            return no(m.error().str());
        if (auto st = uffd_register(u->fd.get(), m->addr(), m->size(), UFFDIO_REGISTER_MODE_WP); !st)
            return no(st.error().str());
        if (auto arm = wp_async_scan(pm->get(), *m); !arm)
            return no("arming: " + arm.error().str());
        // Never-touched PTEs now carry a uffd-wp marker (shown as a swap entry).
        auto e = pagemap_entry(pm->get(), m->addr());
        if (!e)
            return no(e.error().str());
        if (!(*e & abi::kPmUffdWp))
            return no(fmt::format("no uffd-wp marker on an unpopulated page (pagemap {})", hex(*e)));
        m->data()[pg] = 1;
        auto dirty = wp_async_scan(pm->get(), *m);
        if (!dirty)
            return no(dirty.error().str());
        if (!is_exactly_page(*dirty, m->addr() + pg))
            return no("after writing page 1 the scan returned " + regions_text(*dirty));
        return yes(fmt::format("unpopulated pages carry markers (pagemap {}), first write reported", hex(*e)));
    });
}

ProbeResult probe_uffd_minor() {
    return run_isolated([]() -> ProbeResult {
        auto u = open_uffd(abi::kUffdFeatureMinorShmem);
        if (!u)
            return no(u.error().str());
        size_t pg = page_size();
        UniqueFd mfd(memfd_create("criu-kfc-minor", MFD_CLOEXEC));
        if (!mfd)
            return no_errno("memfd_create");
        std::vector<uint8_t> data(pg, 0x6d);
        if (pwrite(mfd.get(), data.data(), pg, 0) != ssize_t(pg))
            return no_errno("fill memfd");
        // The page is in the page cache but not mapped here: exactly a minor fault.
        auto m = ScopedMapping::map(pg, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.get());
        if (!m)
            return no(m.error().str());
        if (auto st = uffd_register(u->fd.get(), m->addr(), pg, UFFDIO_REGISTER_MODE_MINOR); !st)
            return no(st.error().str());
        uffdio_continue c{};
        c.range.start = m->addr();
        c.range.len = pg;
        if (ioctl(u->fd.get(), UFFDIO_CONTINUE, &c) < 0)
            return no_errno("UFFDIO_CONTINUE");
        if (m->data()[0] != 0x6d)
            return no("page mapped by UFFDIO_CONTINUE reads back wrong");
        return yes("MINOR register on shmem and UFFDIO_CONTINUE work");
    });
}

ProbeResult probe_pagemap_scan() {
    auto pm = open_pagemap();
    if (!pm)
        return no(pm.error().str());
    size_t pg = page_size();
    auto m = ScopedMapping::map(4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (!m)
        return no(m.error().str());
    m->data()[0] = 1;
    m->data()[2 * pg] = 1;
    auto v = pagemap_scan(pm->get(), m->addr(), m->addr() + m->size(), 0, 0, kPageIsPresent,
                          kPageIsPresent);
    if (!v)
        return no(v.error().str());
    if (v->size() != 2 || (*v)[0].start != m->addr() || (*v)[0].end != m->addr() + pg ||
        (*v)[1].start != m->addr() + 2 * pg || (*v)[1].end != m->addr() + 3 * pg)
        return no("scan for present pages 0 and 2 of 4 returned " + regions_text(*v));
    return yes("present pages found exactly (2 regions of 4 pages)");
}

ProbeResult probe_soft_dirty() {
    // clear_refs acts on the whole mm: do it in a child, not in the caller.
    return run_isolated([]() -> ProbeResult {
        auto pm = open_pagemap();
        if (!pm)
            return no(pm.error().str());
        size_t pg = page_size();
        auto m = ScopedMapping::map(pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (!m)
            return no(m.error().str());
        m->data()[0] = 1;
        if (auto st = write_text("/proc/self/clear_refs", "4"); !st)
            return no(st.error().str());
        auto before = pagemap_entry(pm->get(), m->addr());
        m->data()[0] = 2;
        auto after = pagemap_entry(pm->get(), m->addr());
        if (!before || !after)
            return no((before ? after.error() : before.error()).str());
        bool b = *before & abi::kPmSoftDirty, a = *after & abi::kPmSoftDirty;
        if (!b && a)
            return yes("pagemap bit 55 cleared by clear_refs=4 and set again by a write");
        if (!a)
            return no("pagemap bit 55 stays 0 after a write (kernel built without CONFIG_MEM_SOFT_DIRTY)");
        return no("pagemap bit 55 was not cleared by clear_refs=4");
    });
}

const Probe kProbes[] = {
    {"uffd", Category::SomeStates, "lazy restore and post-copy migration (MISSING faults, UFFDIO_COPY)",
     "copy all pages before the restored tree runs", probe_uffd},
    {"uffd_wp_async", Category::SomeStates, "exact incremental dumps and pre-copy: kernel-resolved write-protect",
     "soft-dirty, else hashing every page each round", probe_uffd_wp_async},
    {"pagemap_scan", Category::SomeStates, "finding present/written pages in one ioctl; arming uffd-wp async",
     "read /proc/PID/pagemap 8 bytes per page", probe_pagemap_scan},
    {"uffd_wp", Category::Optional, "synchronous write-protect faults (live page tracking by a handler)",
     "uffd_wp_async tracking (no handler needed)", probe_uffd_wp},
    {"uffd_wp_unpopulated", Category::Optional, "tracking first writes to never-touched pages without prefaulting",
     "treat never-populated pages as dirty when first seen", probe_uffd_wp_unpopulated},
    {"uffd_minor", Category::Optional, "post-copy of shmem/memfd mappings via minor faults",
     "copy shared memory before the restored tree runs", probe_uffd_minor},
    {"soft_dirty", Category::Optional, "dirty tracking via clear_refs and pagemap bit 55",
     "uffd_wp_async + pagemap_scan, else page hashing", probe_soft_dirty},
};

}  // namespace

std::span<const Probe> memory_probes() { return kProbes; }

}  // namespace criu::kfc
