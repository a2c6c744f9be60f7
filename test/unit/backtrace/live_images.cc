#include "test/unit/backtrace/live_images.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/sysmacros.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc's obsolete sigmask() macro would break ThreadCore::sigmask() in core.pb.h.
#undef sigmask

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "criu/core/proc_parse.h"
#include "criu/core/unique_fd.h"
#include "images/image_dir.h"
#include "images/page_writer.h"
#include "proto/core.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"

namespace criu::test {

Target::Target(const std::vector<std::string>& args) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe2");
    pid_ = fork();
    if (pid_ < 0)
        throw std::runtime_error("fork");
    if (pid_ == 0) {
        // Dies with the test even if the test aborts before its destructor runs, and
        // holds none of the test's own output open.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(null, 2);
        dup2(p[1], 1);
        std::vector<char*> argv;
        std::string self = BT_TARGET_PATH;
        argv.push_back(self.data());
        std::vector<std::string> copy = args;
        for (auto& a : copy)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(p[1]);
    char buf[6];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t n = read(p[0], buf + got, sizeof(buf) - got);
        if (n <= 0)
            break;
        got += static_cast<size_t>(n);
    }
    close(p[0]);
    if (got != sizeof(buf) || std::memcmp(buf, "ready\n", 6) != 0)
        throw std::runtime_error("bt_target did not get ready");
}

Target::~Target() {
    if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
}

namespace {

// Every thread stopped under ptrace; detached again on destruction.
class Seized {
public:
    ~Seized() {
        for (pid_t t : tids_)
            ptrace(PTRACE_DETACH, t, nullptr, nullptr);
    }
    Status seize(pid_t tid) {
        if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0)
            return fail_errno("PTRACE_SEIZE {}", tid);
        tids_.push_back(tid);
        if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0)
            return fail_errno("PTRACE_INTERRUPT {}", tid);
        int status = 0;
        if (waitpid(tid, &status, __WALL) != tid)
            return fail_errno("waitpid {}", tid);
        return {};
    }

private:
    std::vector<pid_t> tids_;
};

images::VmaKind kind_of(const MapsEntry& m) {
    if (m.path == "[stack]")
        return images::VMA_STACK;
    if (m.path == "[heap]")
        return images::VMA_HEAP;
    if (m.path == "[vdso]")
        return images::VMA_VDSO;
    if (m.path == "[vvar]")
        return images::VMA_VVAR;
    if (m.path == "[vvar_vclock]")
        return images::VMA_VVAR_VCLOCK;
    if (m.path == "[vsyscall]")
        return images::VMA_VSYSCALL;
    if (!m.path.empty() && m.path[0] == '/')
        return m.shared ? images::VMA_FILE_SHARED : images::VMA_FILE_PRIVATE;
    return m.shared ? images::VMA_ANON_SHARED : images::VMA_ANON_PRIVATE;
}

}  // namespace

Status write_live_images(pid_t pid, const std::string& path, const LiveDumpOptions& opts) {
    Seized seized;
    std::vector<pid_t> tids = TRY(list_tasks(pid));
    for (pid_t t : tids)
        TRY_VOID(seized.seize(t));

    ImageDir dir = TRY(ImageDir::create(path));
    images::Inventory inv;
    inv.set_root_pid(pid);
    struct utsname u;
    uname(&u);
    inv.set_kernel_release(u.release);
    inv.set_page_size(kPageSize);
    TRY_VOID(dir.write_inventory(inv));

    images::PstreeEntry pe;
    pe.set_pid(pid);
    // The main thread first, as the dumper writes it.
    pe.add_threads(pid);
    for (pid_t t : tids)
        if (t != pid)
            pe.add_threads(t);
    auto pstree = TRY(dir.open_writer(ImageType::Pstree));
    TRY_VOID(pstree.write(pe));
    TRY_VOID(pstree.close());

    images::TaskCore core;
    core.set_pid(pid);
    std::string comm = TRY(read_proc_file(fmt::format("/proc/{}/comm", pid)));
    if (!comm.empty() && comm.back() == '\n')
        comm.pop_back();
    core.set_comm(comm);
    for (int32_t t : pe.threads()) {
        user_regs_struct regs;
        if (ptrace(PTRACE_GETREGS, t, nullptr, &regs) != 0)
            return fail_errno("PTRACE_GETREGS {}", t);
        images::ThreadCore* tc = core.add_threads();
        tc->set_tid(t);
        tc->set_gpregs(std::string(reinterpret_cast<const char*>(&regs), sizeof(regs)));
        tc->set_comm(comm);
    }
    auto core_w = TRY(dir.open_writer(ImageType::Core, pid));
    TRY_VOID(core_w.write(core));
    TRY_VOID(core_w.close());

    std::vector<MapsEntry> maps = TRY(read_maps(pid));
    images::MmInfo mm;
    for (const MapsEntry& m : maps) {
        images::Vma* v = mm.add_vmas();
        v->set_start(m.start);
        v->set_end(m.end);
        v->set_pgoff(m.pgoff);
        v->set_prot((m.read ? PROT_READ : 0) | (m.write ? PROT_WRITE : 0) | (m.exec ? PROT_EXEC : 0));
        v->set_flags(m.shared ? MAP_SHARED : MAP_PRIVATE);
        v->set_kind(kind_of(m));
        if (!m.path.empty())
            v->set_path(m.path);
        v->set_dev(makedev(m.dev_major, m.dev_minor));
        v->set_ino(m.ino);
        v->set_file_deleted(m.deleted);
    }
    auto mm_w = TRY(dir.open_writer(ImageType::Mm, pid));
    TRY_VOID(mm_w.write(mm));
    TRY_VOID(mm_w.close());

    PageWriterOptions pwo;
    pwo.codec = opts.codec;
    pwo.threads = 0;
    auto pages = TRY(PageWriter::create(dir, pid, pwo));
    UniqueFd mem(open(fmt::format("/proc/{}/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem)
        return fail_errno("open /proc/{}/mem", pid);
    for (const images::Vma& v : mm.vmas()) {
        bool anon = v.kind() == images::VMA_ANON_PRIVATE || v.kind() == images::VMA_HEAP ||
                    v.kind() == images::VMA_STACK;
        bool writable_file = v.kind() == images::VMA_FILE_PRIVATE && (v.prot() & PROT_WRITE);
        bool vdso = v.kind() == images::VMA_VDSO && opts.vdso_pages;
        // Reservations of that size (a sanitizer's shadow) hold nothing a stack needs.
        if (!(v.prot() & PROT_READ) || !(anon || writable_file || vdso) || v.end() - v.start() > (256u << 20))
            continue;
        std::string buf(1 << 20, '\0');
        for (uint64_t at = v.start(); at < v.end(); at += buf.size()) {
            size_t len = static_cast<size_t>(std::min<uint64_t>(buf.size(), v.end() - at));
            ssize_t n = pread(mem.get(), buf.data(), len, static_cast<off_t>(at));
            if (n != static_cast<ssize_t>(len))
                return fail_errno("reading [{:#x}, +{:#x}) of pid {}", at, len, pid);
            TRY_VOID(pages.add_pages(at, buf.data(), len / kPageSize));
        }
    }
    TRY_VOID(pages.finish());
    return {};
}

}  // namespace criu::test
