// eventfd: the counter and EFD_SEMAPHORE come from fdinfo ("eventfd-count: 2a",
// "eventfd-semaphore: 1"; KERNEL-NOTES section 2), O_NONBLOCK from the open flags. Restore
// creates a new eventfd and writes the counter into it.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "criu/files/fd_kind_table.h"

namespace criu {
namespace {

// eventfd_write() refuses ULLONG_MAX; the counter can never exceed the value below it.
constexpr uint64_t kMaxEventfdCount = UINT64_MAX - 1;

Status dump_eventfd(KindDumpContext&, const FdView& v, images::FileEntry& out) {
    std::string_view count = fdinfo_field(v.fdinfo, "eventfd-count");
    std::string_view sem = fdinfo_field(v.fdinfo, "eventfd-semaphore");
    auto n = parse_number<uint64_t>(count, 16);
    if (!n)
        return failf(EINVAL, "{}: cannot parse eventfd-count \"{}\" in fdinfo", v.where(), count);
    // Without the field (kernels before it was added) semaphore mode is invisible; guessing
    // "no" would change how read() behaves after restore.
    auto s = parse_number<int>(sem);
    if (!s || (*s != 0 && *s != 1))
        return failf(ENOTSUP, "{}: this kernel's fdinfo does not say whether the eventfd is in semaphore mode "
                              "(eventfd-semaphore: \"{}\")", v.where(), sem);
    auto* e = out.mutable_eventfd();
    e->set_flags(description_flags(v));
    e->set_counter(*n);
    e->set_semaphore(*s == 1);
    return {};
}

Status validate_eventfd(const images::FileEntry& e) {
    if (!e.has_eventfd())
        return fail(EINVAL, "eventfd entry without EventfdFile data");
    TRY_VOID_CTX(validate_anon_flags(e.eventfd().flags(), O_RDWR), "eventfd");
    if (e.eventfd().counter() > kMaxEventfdCount)
        return failf(EINVAL, "eventfd counter {:#x} is above the largest value an eventfd can hold ({:#x})",
                     e.eventfd().counter(), kMaxEventfdCount);
    return {};
}

Expected<UniqueFd> open_eventfd(KindRestoreContext& c, const images::FileEntry& e) {
    const auto& ef = e.eventfd();
    // The initial value of eventfd() is only 32 bits wide: start at 0 and write the counter.
    UniqueFd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | (ef.semaphore() ? EFD_SEMAPHORE : 0)));
    if (!fd)
        return fail_errno("eventfd");
    if (uint64_t n = ef.counter(); n != 0) {
        if (write(fd.get(), &n, sizeof n) != static_cast<ssize_t>(sizeof n))
            return fail_errno("writing counter {} into the eventfd", n);
    }
    TRY_VOID_CTX(set_status_flags(fd.get(), ef.flags()), "eventfd");
    return c.to_high(std::move(fd));
}

}  // namespace

const FdKindOps kEventfdKind{
    .name = "eventfd",
    .kind = images::FD_EVENTFD,
    .match = [](const FdView& v) { return v.link == "anon_inode:[eventfd]"; },
    .dump = dump_eventfd,
    .validate = validate_eventfd,
    .open = open_eventfd,
};

}  // namespace criu
