#include "criu/backtrace/backtrace.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include <fmt/format.h>

#include "criu/backtrace/core_plan.h"
#include "criu/backtrace/core_unwinder.h"
#include "criu/backtrace/process_memory.h"
#include "criu/backtrace/synthetic_core.h"
#include "criu/core/proc_parse.h"
#include "images/image_dir.h"
#include "images/page_reader.h"
#include "proto/core.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"

namespace criu {
namespace {

// Threads of one process we unwind; each is a note in the core and a cursor.
constexpr int kMaxThreads = 16384;

// The dumper may leave the vDSO's pages out (a restore maps the new kernel's). On the
// kernel that made the dump, the vDSO is the same bytes as this process's own, so that
// one stands in: frames stopped inside it (clock_gettime in a busy loop) then unwind.
void use_host_vdso(ProcessMemory& mem, const images::Inventory& inv) {
    const auto& vmas = mem.vmas();
    auto it = std::find_if(vmas.begin(), vmas.end(), [](const images::Vma& v) { return v.kind() == images::VMA_VDSO; });
    if (it == vmas.end() || mem.has_pages(it->start(), it->end()))
        return;
    struct utsname u;
    if (uname(&u) != 0 || inv.kernel_release() != u.release)
        return;
    auto maps = read_maps(getpid());
    if (!maps)
        return;
    for (const MapsEntry& e : *maps) {
        if (e.path != "[vdso]" || e.size() != it->end() - it->start())
            continue;
        std::string bytes(reinterpret_cast<const char*>(e.start), e.size());
        mem.set_fallback(static_cast<size_t>(it - vmas.begin()), std::move(bytes));
        return;
    }
}

void annotate(const ProcessMemory& mem, BacktraceFrame& f) {
    auto i = mem.find_vma(f.ip);
    if (!i)
        return;
    const images::Vma& v = mem.vmas()[*i];
    f.module = v.path();
    if (v.kind() == images::VMA_FILE_PRIVATE || v.kind() == images::VMA_FILE_SHARED)
        f.module_offset = v.pgoff() + (f.ip - v.start());
    else if (v.kind() == images::VMA_VDSO)
        f.module_offset = f.ip - v.start();
}

Status unwind_process(const ImageDir& dir, const images::Inventory& inv, const images::PstreeEntry& pe,
                      const BacktraceOptions& opts, ProcessBacktrace& out) {
    const int32_t pid = pe.pid();
    auto core_reader = TRY(dir.open_reader(ImageType::Core, pid));
    images::TaskCore core = TRY(core_reader.read_one<images::TaskCore>());
    out.comm = core.comm();
    if (core.pid() != pid)
        return failf(EINVAL, "{} is for pid {}", core_reader.path(), core.pid());
    if (core.threads_size() > kMaxThreads || pe.threads_size() > kMaxThreads)
        return failf(E2BIG, "more than {} threads", kMaxThreads);

    std::vector<CoreThread> threads;
    std::vector<size_t> slot;  // layout thread -> index in out.threads
    std::unordered_set<int32_t> known;
    for (const images::ThreadCore& t : core.threads()) {
        ThreadBacktrace tb;
        tb.tid = t.tid();
        known.insert(t.tid());
        if (t.gpregs().size() != sizeof(user_regs_struct)) {
            tb.error = fmt::format("registers are {} bytes in {}, expected {}", t.gpregs().size(),
                                   core_reader.path(), sizeof(user_regs_struct));
        } else {
            CoreThread ct;
            ct.tid = t.tid();
            std::memcpy(&ct.regs, t.gpregs().data(), sizeof(ct.regs));
            threads.push_back(ct);
            slot.push_back(out.threads.size());
        }
        out.threads.push_back(std::move(tb));
    }
    for (int32_t tid : pe.threads()) {
        if (known.insert(tid).second)
            out.threads.push_back(ThreadBacktrace{tid, {}, fmt::format("no registers in {}", core_reader.path())});
    }
    if (threads.empty())
        return {};

    auto mm_reader = TRY(dir.open_reader(ImageType::Mm, pid));
    images::MmInfo mm = TRY(mm_reader.read_one<images::MmInfo>());
    PageReader pages = TRY(PageReader::open(dir, pid));
    ProcessMemory mem = TRY(ProcessMemory::create(mm, std::move(pages), mm_reader.path()));
    mem.open_files(out.warnings);
    use_host_vdso(mem, inv);

    CoreLayout layout = plan_core_layout(mem, pid, core.comm(), std::move(threads));
    SyntheticCore synthetic = TRY_CTX(
        SyntheticCore::create(layout, [&](uint64_t vaddr, size_t len, char* dst) { return mem.read(vaddr, len, dst); }),
        "synthesizing a core");
    CoreUnwinder unwinder = TRY(
        CoreUnwinder::open(synthetic, layout, [&](uint64_t page, char* dst) { return mem.read_page(page, dst); }));
    for (size_t k = 0; k < layout.threads.size(); k++) {
        UnwoundThread u = unwinder.unwind(static_cast<int>(k), opts.max_frames);
        ThreadBacktrace& tb = out.threads[slot[k]];
        tb.error = std::move(u.error);
        for (UnwoundFrame& uf : u.frames) {
            BacktraceFrame f;
            f.ip = uf.ip;
            f.sp = uf.sp;
            f.symbol = std::move(uf.symbol);
            f.symbol_offset = uf.symbol_offset;
            f.signal_frame = uf.signal_frame;
            annotate(mem, f);
            tb.frames.push_back(std::move(f));
        }
    }
    return {};
}

}  // namespace

Expected<BacktraceReport> unwind_image_dir(const std::string& path, const BacktraceOptions& opts) {
    ImageDir dir = TRY_CTX(ImageDir::open(path), "reading backtraces");
    images::Inventory inv = TRY_CTX(dir.read_inventory(), "reading backtraces");
    if (inv.pre_dump())
        return failf(EINVAL, "{}: a pre-dump holds memory only, no thread state to unwind", path);
    auto pstree_reader = TRY_CTX(dir.open_reader(ImageType::Pstree), "reading backtraces");
    auto entries = TRY_CTX(pstree_reader.read_all<images::PstreeEntry>(), "reading backtraces");

    BacktraceReport report;
    report.dir = path;
    for (const images::PstreeEntry& pe : entries) {
        ProcessBacktrace proc;
        proc.pid = pe.pid();
        if (pe.zombie()) {
            proc.error = "zombie: no threads to unwind";
        } else if (auto r = unwind_process(dir, inv, pe, opts, proc); !r) {
            proc.error = r.error().str();
        }
        report.processes.push_back(std::move(proc));
    }
    return report;
}

}  // namespace criu
