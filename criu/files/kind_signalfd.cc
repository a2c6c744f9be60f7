// signalfd: the set of accepted signals comes from fdinfo ("sigmask:\t0000000200000200",
// signal n is bit n-1), O_NONBLOCK from the open flags. Signals queued for the process are not
// the signalfd's: they belong to the process's signal state and are restored with it.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

constexpr uint64_t sigbit(int sig) { return uint64_t(1) << (sig - 1); }

Status dump_signalfd(KindDumpContext&, const FdView& v, images::FileEntry& out) {
    std::string_view mask = fdinfo_field(v.fdinfo, "sigmask");
    auto m = parse_number<uint64_t>(mask, 16);
    if (!m)
        return failf(EINVAL, "{}: cannot parse sigmask \"{}\" in fdinfo", v.where(), mask);
    auto* s = out.mutable_signalfd();
    s->set_flags(description_flags(v));
    s->set_mask(*m);
    return {};
}

Status validate_signalfd(const images::FileEntry& e) {
    if (!e.has_signalfd())
        return fail(EINVAL, "signalfd entry without SignalfdFile data");
    TRY_VOID_CTX(validate_anon_flags(e.signalfd().flags(), O_RDWR), "signalfd");
    // The kernel drops SIGKILL and SIGSTOP from every signalfd mask: no dump has them.
    if (e.signalfd().mask() & (sigbit(SIGKILL) | sigbit(SIGSTOP)))
        return failf(EINVAL, "signalfd mask {:#x} has SIGKILL or SIGSTOP, which no signalfd can accept",
                     e.signalfd().mask());
    return {};
}

Expected<UniqueFd> open_signalfd(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& s = e.signalfd();
    // The raw syscall takes the kernel's 64-bit mask as is; glibc's sigaddset() refuses the two
    // real-time signals it keeps for itself (32, 33), which a process can still have in a mask.
    uint64_t mask = s.mask();
    UniqueFd fd(static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC)));
    if (!fd)
        return fail_errno("signalfd with mask {:#x}", mask);
    TRY_VOID_CTX(set_status_flags(fd.get(), s.flags()), "signalfd");
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kSignalfdKind{
    .name = "signalfd",
    .kind = images::FD_SIGNALFD,
    .match = [](const FdView& v) { return v.link == "anon_inode:[signalfd]"; },
    .dump = dump_signalfd,
    .validate = validate_signalfd,
    .open = open_signalfd,
};

}  // namespace criu
