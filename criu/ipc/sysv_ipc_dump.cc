// Dump half of System V IPC (sysv_ipc.h).
#include <fcntl.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "criu/core/proc_parse.h"
#include "criu/ipc/sysv_ipc.h"
#include "images/image_io.h"

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

namespace criu {
namespace {

constexpr size_t kPage = 4096;

Expected<std::string> read_text(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno("open {}", path);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof buf)) > 0)
        out.append(buf, size_t(n));
    if (n < 0)
        return fail_errno("read {}", path);
    return out;
}

// The second column of every line after the header of /proc/sysvipc/{shm,msg,sem}: the ids.
Expected<std::vector<int>> list_ids(const char* what) {
    std::string path = fmt::format("/proc/sysvipc/{}", what);
    std::string text = TRY(read_text(path));
    std::vector<int> ids;
    size_t at = text.find('\n');
    while (at != std::string::npos && at + 1 < text.size()) {
        size_t eol = text.find('\n', at + 1);
        std::string line = text.substr(at + 1, eol == std::string::npos ? std::string::npos : eol - at - 1);
        int key = 0, id = -1;
        if (sscanf(line.c_str(), "%d %d", &key, &id) != 2)
            return failf(EINVAL, "{}: cannot parse \"{}\"", path, line);
        ids.push_back(id);
        at = eol;
    }
    return ids;
}

void fill_perm(images::SysvIpcPerm& p, int id, const struct ipc_perm& k) {
    p.set_key(k.__key);
    p.set_id(id);
    p.set_uid(k.uid);
    p.set_gid(k.gid);
    p.set_cuid(k.cuid);
    p.set_cgid(k.cgid);
    p.set_mode(k.mode & 0777);
}

Status dump_shm(int id, int dirfd, images::IpcNamespace& ns, Log& log) {
    struct shmid_ds ds {};
    if (shmctl(id, IPC_STAT, &ds) != 0)
        return fail_errno("shared memory segment {}: IPC_STAT", id);
    auto* s = ns.add_shms();
    fill_perm(*s->mutable_perm(), id, ds.shm_perm);
    s->set_size(ds.shm_segsz);
    s->set_locked(ds.shm_perm.mode & SHM_LOCKED);
    s->set_destroyed(ds.shm_perm.mode & SHM_DEST);
    s->set_content_file(fmt::format("sysvshm-{}.img", id));

    // Read-only attach of our own: the process's attaches and pages are left alone.
    void* at = shmat(id, nullptr, SHM_RDONLY);
    if (at == reinterpret_cast<void*>(-1))
        return fail_errno("shared memory segment {}: shmat to read it", id);
    struct Detach {
        void* p;
        ~Detach() { shmdt(p); }
    } detach{at};
    UniqueFd out(openat(dirfd, s->content_file().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out)
        return fail_errno("creating {}", s->content_file());
    if (ftruncate(out.get(), off_t(ds.shm_segsz)) != 0)
        return fail_errno("{}: ftruncate to {}", s->content_file(), ds.shm_segsz);
    // Sparse: runs of zero pages stay holes (a mostly empty segment costs no disk).
    const auto* base = static_cast<const uint8_t*>(at);
    static const uint8_t zero[kPage] = {};
    uint64_t written = 0;
    for (uint64_t off = 0; off < ds.shm_segsz;) {
        size_t len = size_t(std::min<uint64_t>(kPage, ds.shm_segsz - off));
        if (std::memcmp(base + off, zero, len) == 0) {
            off += len;
            continue;
        }
        uint64_t end = off + len;
        while (end < ds.shm_segsz) {
            size_t l2 = size_t(std::min<uint64_t>(kPage, ds.shm_segsz - end));
            if (std::memcmp(base + end, zero, l2) == 0)
                break;
            end += l2;
        }
        for (uint64_t w = off; w < end;) {
            ssize_t n = pwrite(out.get(), base + w, size_t(end - w), off_t(w));
            if (n <= 0)
                return fail_errno("writing {}", s->content_file());
            w += uint64_t(n);
        }
        written += end - off;
        off = end;
    }
    log.info("ipc", "shared memory segment {} (key {:#x}, {} bytes, {} non-zero){}", id, uint32_t(s->perm().key()),
             ds.shm_segsz, written, s->destroyed() ? ", removed" : "");
    return {};
}

Status dump_msg(int id, long msgmax, images::IpcNamespace& ns, Log& log) {
    struct msqid_ds ds {};
    if (msgctl(id, IPC_STAT, &ds) != 0)
        return fail_errno("message queue {}: IPC_STAT", id);
    auto* q = ns.add_queues();
    fill_perm(*q->mutable_perm(), id, ds.msg_perm);
    q->set_qbytes(ds.msg_qbytes);
    std::vector<char> buf(sizeof(long) + size_t(msgmax));
    // MSG_COPY (CONFIG_CHECKPOINT_RESTORE) copies message number i without taking it.
    for (msgqnum_t i = 0; i < ds.msg_qnum; ++i) {
        ssize_t n = msgrcv(id, buf.data(), size_t(msgmax), long(i), IPC_NOWAIT | MSG_COPY);
        if (n < 0)
            return fail_errno("message queue {}: reading message {} of {} (MSG_COPY)", id, i, ds.msg_qnum);
        auto* m = q->add_messages();
        long type;
        std::memcpy(&type, buf.data(), sizeof type);
        m->set_mtype(type);
        m->set_text(std::string(buf.data() + sizeof(long), size_t(n)));
    }
    log.info("ipc", "message queue {} (key {:#x}): {} messages", id, uint32_t(q->perm().key()), ds.msg_qnum);
    return {};
}

Status dump_sem(int id, images::IpcNamespace& ns, Log& log) {
    struct semid_ds ds {};
    if (semctl(id, 0, IPC_STAT, &ds) != 0)
        return fail_errno("semaphore set {}: IPC_STAT", id);
    auto* s = ns.add_sems();
    fill_perm(*s->mutable_perm(), id, ds.sem_perm);
    std::vector<unsigned short> vals(ds.sem_nsems);
    if (ds.sem_nsems && semctl(id, 0, GETALL, vals.data()) != 0)
        return fail_errno("semaphore set {}: GETALL", id);
    for (auto v : vals)
        s->add_values(v);
    log.info("ipc", "semaphore set {} (key {:#x}): {} semaphores", id, uint32_t(s->perm().key()), ds.sem_nsems);
    return {};
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

// Runs inside the process's IPC namespace (a thread that did setns).
Status collect(int dirfd, images::IpcNamespace& ns, Log& log) {
    auto sys = [](const char* n) -> Expected<std::string> {
        return trimmed(TRY(read_text(fmt::format("/proc/sys/kernel/{}", n))));
    };
    ns.set_shmmax(TRY(sys("shmmax")));
    ns.set_shmall(TRY(sys("shmall")));
    ns.set_shmmni(TRY(sys("shmmni")));
    ns.set_msgmax(TRY(sys("msgmax")));
    ns.set_msgmnb(TRY(sys("msgmnb")));
    ns.set_msgmni(TRY(sys("msgmni")));
    ns.set_sem(TRY(sys("sem")));
    long msgmax = std::stol(ns.msgmax());
    for (int id : TRY(list_ids("shm")))
        TRY_VOID(dump_shm(id, dirfd, ns, log));
    for (int id : TRY(list_ids("msg")))
        TRY_VOID(dump_msg(id, msgmax, ns, log));
    for (int id : TRY(list_ids("sem")))
        TRY_VOID(dump_sem(id, ns, log));
    return {};
}

Expected<struct stat> stat_path(const std::string& p) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0)
        return fail_errno("stat {}", p);
    return st;
}

}  // namespace

Expected<bool> has_own_ipc_ns(pid_t pid) {
    struct stat mine = TRY(stat_path("/proc/self/ns/ipc"));
    struct stat theirs = TRY(stat_path(fmt::format("/proc/{}/ns/ipc", pid)));
    return mine.st_ino != theirs.st_ino || mine.st_dev != theirs.st_dev;
}

Status preflight_sysv_ipc(pid_t pid) {
    if (TRY(has_own_ipc_ns(pid)))
        return {};
    for (const auto& m : TRY(read_maps(pid))) {
        if (m.path.starts_with("/SYSV") && m.deleted)
            return failf(ENOTSUP,
                         "pid {} vma {:x}-{:x}: System V shared memory segment {} of the host's IPC namespace; only "
                         "the IPC objects of a process's own IPC namespace can be dumped (start it with unshare "
                         "--ipc)",
                         pid, m.start, m.end, m.ino);
    }
    return {};
}

Expected<bool> dump_sysv_ipc(pid_t pid, int images_dirfd, Log& log) {
    if (!TRY(has_own_ipc_ns(pid)))
        return false;
    std::string nspath = fmt::format("/proc/{}/ns/ipc", pid);
    UniqueFd nsfd(open(nspath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd)
        return fail_errno("open {}", nspath);
    images::IpcNamespace ns;
    Status result;
    // setns(CLONE_NEWIPC) changes only the calling thread; this one ends right after.
    std::thread t([&] {
        if (setns(nsfd.get(), CLONE_NEWIPC) != 0) {
            result = fail_errno("setns into {}", nspath);
            return;
        }
        result = collect(images_dirfd, ns, log);
    });
    t.join();
    TRY_VOID_CTX(std::move(result), "pid {}: IPC namespace", pid);
    ImageWriter w = TRY(ImageWriter::create_at(images_dirfd, image_file_name(ImageType::IpcNs), ImageType::IpcNs));
    TRY_VOID(w.write(ns));
    TRY_VOID(w.close());
    log.info("ipc", "pid {}: own IPC namespace with {} segments, {} queues, {} semaphore sets", pid, ns.shms_size(),
             ns.queues_size(), ns.sems_size());
    return true;
}

}  // namespace criu
