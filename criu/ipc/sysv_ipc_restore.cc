// Restore half of System V IPC (sysv_ipc.h).
#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "criu/ipc/sysv_ipc.h"
#include "images/image_io.h"

namespace criu {
namespace {

// Far above the default limits (shmmni/msgmni 32000, semmni 32000, semmsl 32000), far below
// what a hostile image could make us allocate.
constexpr int kMaxObjects = 65536;
constexpr uint64_t kMaxShmSize = 1ull << 40;
constexpr size_t kMaxSems = 65536;
constexpr size_t kMaxMsgBytes = 64u << 20;

Status write_sysctl(const char* name, const std::string& value) {
    std::string path = fmt::format("/proc/sys/kernel/{}", name);
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", path);
    if (write(fd.get(), value.data(), value.size()) != ssize_t(value.size()))
        return fail_errno("writing \"{}\" to {}", value, path);
    return {};
}

// The next object of this kind gets `id` (index and sequence number): CONFIG_CHECKPOINT_RESTORE.
Status next_id(const char* kind, int id) {
    return write_sysctl(fmt::format("{}_next_id", kind).c_str(), std::to_string(id));
}

template <class Ds>
void set_perm(Ds& ds, const images::SysvIpcPerm& p) {
    ds.uid = p.uid();
    ds.gid = p.gid();
    ds.mode = static_cast<unsigned short>(p.mode());
}

Status check_perm(const images::SysvIpcPerm& p, const char* what, std::set<int>& ids) {
    if (p.id() < 0 || !ids.insert(p.id()).second)
        return failf(EINVAL, "{} id {} is negative or appears twice", what, p.id());
    if (p.mode() & ~0777u)
        return failf(EINVAL, "{} {}: mode 0{:o} has bits beyond 0777", what, p.id(), p.mode());
    return {};
}

Status check_sysctl(const std::string& v, const char* name) {
    if (v.empty() || v.size() > 64 || v.find_first_not_of("0123456789 \t") != std::string::npos)
        return failf(EINVAL, "kernel.{} value \"{}\" is not a list of numbers", name, v);
    return {};
}

}  // namespace

Status validate_ipc_namespace(const images::IpcNamespace& ns) {
    if (ns.shms_size() > kMaxObjects || ns.queues_size() > kMaxObjects || ns.sems_size() > kMaxObjects)
        return failf(EINVAL, "{} segments, {} queues, {} semaphore sets: more than {} of one kind", ns.shms_size(),
                     ns.queues_size(), ns.sems_size(), kMaxObjects);
    TRY_VOID(check_sysctl(ns.shmmax(), "shmmax"));
    TRY_VOID(check_sysctl(ns.shmall(), "shmall"));
    TRY_VOID(check_sysctl(ns.shmmni(), "shmmni"));
    TRY_VOID(check_sysctl(ns.msgmax(), "msgmax"));
    TRY_VOID(check_sysctl(ns.msgmnb(), "msgmnb"));
    TRY_VOID(check_sysctl(ns.msgmni(), "msgmni"));
    TRY_VOID(check_sysctl(ns.sem(), "sem"));
    std::set<int> ids;
    for (const auto& s : ns.shms()) {
        TRY_VOID(check_perm(s.perm(), "shared memory segment", ids));
        if (s.size() == 0 || s.size() > kMaxShmSize)
            return failf(EINVAL, "shared memory segment {}: size {} is out of range", s.perm().id(), s.size());
        const std::string& f = s.content_file();
        if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
            return failf(EINVAL, "shared memory segment {}: content file \"{}\" is not a plain name", s.perm().id(), f);
    }
    ids.clear();
    for (const auto& q : ns.queues()) {
        TRY_VOID(check_perm(q.perm(), "message queue", ids));
        size_t total = 0;
        for (const auto& m : q.messages()) {
            if (m.mtype() <= 0)
                return failf(EINVAL, "message queue {}: message type {} is not positive", q.perm().id(), m.mtype());
            total += m.text().size();
        }
        if (total > kMaxMsgBytes || q.qbytes() > kMaxMsgBytes)
            return failf(EINVAL, "message queue {}: {} bytes queued, limit {}", q.perm().id(), total, q.qbytes());
    }
    ids.clear();
    for (const auto& s : ns.sems()) {
        TRY_VOID(check_perm(s.perm(), "semaphore set", ids));
        if (s.values_size() == 0 || size_t(s.values_size()) > kMaxSems)
            return failf(EINVAL, "semaphore set {}: {} semaphores", s.perm().id(), s.values_size());
        for (uint32_t v : s.values())
            if (v > 32767)  // SEMVMX
                return failf(EINVAL, "semaphore set {}: value {} is above SEMVMX", s.perm().id(), v);
    }
    return {};
}

Expected<std::optional<SysvIpcRestorer>> SysvIpcRestorer::load(int images_dirfd, Log& log) {
    std::string name = image_file_name(ImageType::IpcNs);
    if (faccessat(images_dirfd, name.c_str(), F_OK, 0) != 0) {
        if (errno == ENOENT)
            return std::optional<SysvIpcRestorer>();
        return fail_errno("{}", name);
    }
    auto r = TRY(ImageReader::open_at(images_dirfd, name, ImageType::IpcNs));
    SysvIpcRestorer out;
    if (!TRY(r.read(out.ns_)))
        return failf(EINVAL, "{}: no IpcNamespace record", r.path());
    TRY_VOID_CTX(validate_ipc_namespace(out.ns_), "{}", r.path());
    for (const auto& s : out.ns_.shms()) {
        UniqueFd fd(openat(images_dirfd, s.content_file().c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd)
            return fail_errno("{}: content of shared memory segment {}", s.content_file(), s.perm().id());
        struct stat st {};
        if (fstat(fd.get(), &st) != 0 || uint64_t(st.st_size) != s.size())
            return failf(EINVAL, "{}: {} bytes, segment {} has {}", s.content_file(), st.st_size, s.perm().id(),
                         s.size());
        out.contents_.push_back(std::move(fd));
    }
    log.info("ipc", "{}: {} segments, {} queues, {} semaphore sets", r.path(), out.ns_.shms_size(),
             out.ns_.queues_size(), out.ns_.sems_size());
    return std::optional<SysvIpcRestorer>(std::move(out));
}

bool SysvIpcRestorer::has_segment(int shmid) const {
    return std::any_of(ns_.shms().begin(), ns_.shms().end(), [&](const auto& s) { return s.perm().id() == shmid; });
}

Status SysvIpcRestorer::restore_in_child(const std::set<int>& attached) {
    if (unshare(CLONE_NEWIPC) != 0)
        return fail_errno("unshare(CLONE_NEWIPC)");
    // Limits first: a queue's msg_qbytes above msgmnb would need CAP_SYS_RESOURCE.
    TRY_VOID(write_sysctl("shmmax", ns_.shmmax()));
    TRY_VOID(write_sysctl("shmall", ns_.shmall()));
    TRY_VOID(write_sysctl("shmmni", ns_.shmmni()));
    TRY_VOID(write_sysctl("msgmax", ns_.msgmax()));
    TRY_VOID(write_sysctl("msgmnb", ns_.msgmnb()));
    TRY_VOID(write_sysctl("msgmni", ns_.msgmni()));
    TRY_VOID(write_sysctl("sem", ns_.sem()));

    for (int i = 0; i < ns_.shms_size(); ++i) {
        const auto& s = ns_.shms(i);
        const auto& p = s.perm();
        TRY_VOID(next_id("shm", p.id()));
        int id = shmget(p.key(), s.size(), IPC_CREAT | IPC_EXCL | int(p.mode()));
        if (id < 0)
            return fail_errno("shared memory segment {} (key {:#x}, {} bytes): shmget", p.id(), uint32_t(p.key()),
                              s.size());
        if (id != p.id())
            return failf(EEXIST, "shared memory segment {} was created with id {}", p.id(), id);
        void* at = shmat(id, nullptr, 0);
        if (at == reinterpret_cast<void*>(-1))
            return fail_errno("shared memory segment {}: shmat to fill it", id);
        int fd = contents_[size_t(i)].get();
        Status fill;
        // Holes of the sparse content file are zero already in a new segment.
        for (off_t off = 0; off < off_t(s.size()) && fill;) {
            off_t data = lseek(fd, off, SEEK_DATA);
            if (data < 0)
                break;  // ENXIO: only holes from here on
            off_t hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0)
                hole = off_t(s.size());
            for (off_t w = data; w < hole;) {
                ssize_t n = pread(fd, static_cast<char*>(at) + w, size_t(hole - w), w);
                if (n <= 0) {
                    fill = fail_errno("shared memory segment {}: reading {}", id, s.content_file());
                    break;
                }
                w += n;
            }
            off = hole;
        }
        shmdt(at);
        TRY_VOID(std::move(fill));
        struct shmid_ds ds {};
        if (shmctl(id, IPC_STAT, &ds) != 0)
            return fail_errno("shared memory segment {}: IPC_STAT", id);
        set_perm(ds.shm_perm, p);
        if (shmctl(id, IPC_SET, &ds) != 0)
            return fail_errno("shared memory segment {}: IPC_SET owner {}:{} mode 0{:o}", id, p.uid(), p.gid(), p.mode());
        if (s.locked() && shmctl(id, SHM_LOCK, nullptr) != 0)
            return fail_errno("shared memory segment {}: SHM_LOCK", id);
        if (s.destroyed() && !attached.contains(id) && shmctl(id, IPC_RMID, nullptr) != 0)
            return fail_errno("shared memory segment {}: IPC_RMID", id);
    }
    contents_.clear();

    for (const auto& q : ns_.queues()) {
        const auto& p = q.perm();
        TRY_VOID(next_id("msg", p.id()));
        int id = msgget(p.key(), IPC_CREAT | IPC_EXCL | int(p.mode()));
        if (id < 0)
            return fail_errno("message queue {} (key {:#x}): msgget", p.id(), uint32_t(p.key()));
        if (id != p.id())
            return failf(EEXIST, "message queue {} was created with id {}", p.id(), id);
        struct msqid_ds ds {};
        if (msgctl(id, IPC_STAT, &ds) != 0)
            return fail_errno("message queue {}: IPC_STAT", id);
        set_perm(ds.msg_perm, p);
        ds.msg_qbytes = q.qbytes();
        if (msgctl(id, IPC_SET, &ds) != 0)
            return fail_errno("message queue {}: IPC_SET (msg_qbytes {})", id, q.qbytes());
        std::vector<char> buf;
        for (const auto& m : q.messages()) {
            buf.resize(sizeof(long) + m.text().size());
            long type = long(m.mtype());
            std::memcpy(buf.data(), &type, sizeof type);
            std::memcpy(buf.data() + sizeof type, m.text().data(), m.text().size());
            if (msgsnd(id, buf.data(), m.text().size(), IPC_NOWAIT) != 0)
                return fail_errno("message queue {}: putting back a message of type {} ({} bytes)", id, type,
                                  m.text().size());
        }
    }

    for (const auto& s : ns_.sems()) {
        const auto& p = s.perm();
        TRY_VOID(next_id("sem", p.id()));
        int id = semget(p.key(), s.values_size(), IPC_CREAT | IPC_EXCL | int(p.mode()));
        if (id < 0)
            return fail_errno("semaphore set {} (key {:#x}, {} semaphores): semget", p.id(), uint32_t(p.key()),
                              s.values_size());
        if (id != p.id())
            return failf(EEXIST, "semaphore set {} was created with id {}", p.id(), id);
        std::vector<unsigned short> vals(s.values().begin(), s.values().end());
        if (semctl(id, 0, SETALL, vals.data()) != 0)
            return fail_errno("semaphore set {}: SETALL", id);
        struct semid_ds ds {};
        if (semctl(id, 0, IPC_STAT, &ds) != 0)
            return fail_errno("semaphore set {}: IPC_STAT", id);
        set_perm(ds.sem_perm, p);
        if (semctl(id, 0, IPC_SET, &ds) != 0)
            return fail_errno("semaphore set {}: IPC_SET", id);
    }
    // Segments removed before the dump are removed again by the blob, once it has attached them.
    return {};
}

}  // namespace criu
