#include "criu/backtrace/core_unwinder.h"

#include <cxxabi.h>
#include <libunwind-coredump.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

namespace criu {
namespace {

// Names longer than this are cut; C++ template names can run to kilobytes.
constexpr size_t kMaxSymbolLength = 1024;
constexpr uint64_t kPage = 4096;
// Pages (read or found unreadable) kept between reads: unwinding a thread touches a few
// pages of stack and of unwind tables, over and over.
constexpr size_t kPageCacheEntries = 1024;

// unw_strerror wants the negative code libunwind returns.
std::string unw_error(int r) { return unw_strerror(r > 0 ? -r : r); }

std::string demangle(const char* name) {
    // Only mangled C++ names go to the demangler; everything else is returned as is.
    if (name[0] != '_' || name[1] != 'Z')
        return name;
    int status = 0;
    char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status != 0 || out == nullptr)
        return name;
    std::string s(out);
    std::free(out);
    return s;
}

}  // namespace

struct CoreUnwinder::State {
    UCD_info* ui = nullptr;
    unw_accessors_t accessors{};
    unw_addr_space_t as = nullptr;
    int threads = 0;
    ReadPageFn read_page;
    std::unordered_map<uint64_t, std::unique_ptr<char[]>> pages;
    std::unordered_set<uint64_t> unreadable;

    ~State() {
        if (as)
            unw_destroy_addr_space(as);
        if (ui)
            _UCD_destroy(ui);
    }

    // The page at `p`, or nullptr if the process had no readable memory there.
    const char* page(uint64_t p) {
        if (auto it = pages.find(p); it != pages.end())
            return it->second.get();
        if (unreadable.count(p))
            return nullptr;
        if (pages.size() + unreadable.size() >= kPageCacheEntries) {
            pages.clear();
            unreadable.clear();
        }
        auto buf = std::make_unique<char[]>(kPage);
        if (!read_page(p, buf.get())) {
            unreadable.insert(p);
            return nullptr;
        }
        return (pages[p] = std::move(buf)).get();
    }
};

namespace {

// The State whose memory the running unwind() reads. libunwind passes access_mem the
// `arg` of whichever caller reached it, and inside libunwind-coredump (searching an
// unwind table) that is its UCD_info, never ours: the callback has no other way back
// to our pages. Bound on this thread for the length of one unwind() only.
thread_local CoreUnwinder::State* t_active = nullptr;

class ActiveScope {
public:
    explicit ActiveScope(CoreUnwinder::State* s) : prev_(std::exchange(t_active, s)) {}
    ~ActiveScope() { t_active = prev_; }
    ActiveScope(const ActiveScope&) = delete;
    ActiveScope& operator=(const ActiveScope&) = delete;

private:
    CoreUnwinder::State* prev_;
};

int access_mem(unw_addr_space_t, unw_word_t addr, unw_word_t* val, int write, void*) {
    CoreUnwinder::State* s = t_active;
    if (!s || write)
        return -UNW_EINVAL;
    unsigned char out[sizeof(unw_word_t)];
    // A word may straddle two pages.
    for (size_t done = 0; done < sizeof(out);) {
        uint64_t a = addr + done;
        if (a < addr)
            return -UNW_EINVAL;
        uint64_t p = a & ~(kPage - 1);
        const char* page = s->page(p);
        if (!page)
            return -UNW_EINVAL;
        size_t n = std::min<uint64_t>(sizeof(out) - done, kPage - (a - p));
        std::memcpy(out + done, page + (a - p), n);
        done += n;
    }
    std::memcpy(val, out, sizeof(out));
    return 0;
}

}  // namespace

CoreUnwinder::CoreUnwinder(std::unique_ptr<State> s) : state_(std::move(s)) {}
CoreUnwinder::CoreUnwinder(CoreUnwinder&&) noexcept = default;
CoreUnwinder& CoreUnwinder::operator=(CoreUnwinder&&) noexcept = default;
CoreUnwinder::~CoreUnwinder() = default;

Expected<CoreUnwinder> CoreUnwinder::open(const SyntheticCore& core, const CoreLayout& layout, ReadPageFn read_page) {
    auto st = std::make_unique<State>();
    st->read_page = std::move(read_page);
    st->ui = _UCD_create(core.path().c_str());
    // _UCD_create gives no reason; it fails on what it cannot parse or open.
    if (!st->ui)
        return failf(EINVAL, "libunwind-coredump refused the synthesized core ({} bytes)", core.size());
    st->threads = _UCD_get_num_threads(st->ui);
    if (st->threads != static_cast<int>(layout.threads.size()))
        return failf(EINVAL, "libunwind-coredump sees {} threads in the synthesized core, {} were written",
                     st->threads, layout.threads.size());
    for (size_t i = 0; i < layout.files.size(); i++) {
        // By segment index and not by address: a memory segment may start at the same
        // address, and _UCD_add_backing_file_at_vaddr takes the first match.
        std::string path = fmt::format("/proc/self/fd/{}", layout.files[i].fd);
        if (_UCD_add_backing_file_at_segment(st->ui, core.file_segment_index(i), path.c_str()) != 0)
            return failf(EIO, "libunwind-coredump could not attach the file mapped at {:#x}", layout.files[i].vaddr);
    }
    st->accessors = _UCD_accessors;
    st->accessors.access_mem = access_mem;
    st->as = unw_create_addr_space(&st->accessors, 0);
    if (!st->as)
        return fail(ENOMEM, "unw_create_addr_space failed");
    return CoreUnwinder(std::move(st));
}

int CoreUnwinder::thread_count() const { return state_->threads; }

UnwoundThread CoreUnwinder::unwind(int index, size_t max_frames) {
    UnwoundThread out;
    if (index < 0 || index >= state_->threads) {
        out.error = fmt::format("no thread {} in the synthesized core", index);
        return out;
    }
    ActiveScope active(state_.get());
    _UCD_select_thread(state_->ui, index);
    unw_cursor_t cursor;
    int r = unw_init_remote(&cursor, state_->as, state_->ui);
    if (r < 0) {
        out.error = fmt::format("unw_init_remote: {}", unw_error(r));
        return out;
    }
    for (;;) {
        if (out.frames.size() >= max_frames) {
            out.error = fmt::format("stopped after {} frames", max_frames);
            break;
        }
        unw_word_t ip = 0, sp = 0;
        if ((r = unw_get_reg(&cursor, UNW_REG_IP, &ip)) < 0 || (r = unw_get_reg(&cursor, UNW_REG_SP, &sp)) < 0) {
            out.error = fmt::format("reading registers of frame {}: {}", out.frames.size(), unw_error(r));
            break;
        }
        // A zero return address ends the chain (glibc clears rbp/rip at _start and in
        // clone's child); it is not a frame.
        if (ip == 0 && !out.frames.empty())
            break;
        if (!out.frames.empty() && out.frames.back().ip == ip && out.frames.back().sp == sp) {
            out.error = fmt::format("unwinding made no progress at {:#x}", ip);
            break;
        }
        UnwoundFrame f;
        f.ip = ip;
        f.sp = sp;
        char name[kMaxSymbolLength];
        unw_word_t offset = 0;
        r = unw_get_proc_name(&cursor, name, sizeof(name), &offset);
        // -UNW_ENOMEM: the name was cut to fit, still worth showing.
        if (r == 0 || r == -UNW_ENOMEM) {
            name[sizeof(name) - 1] = '\0';
            // libunwind names the nearest symbol below ip without looking at its size:
            // in a stripped library (only .dynsym) a static function gets the name of
            // whichever exported one precedes it (start_thread shows as
            // pthread_condattr_setpshared+0x515). When the unwind tables say where the
            // function starts, a name starting elsewhere is not this function's.
            unw_proc_info_t pi;
            if (unw_get_proc_info(&cursor, &pi) == 0 && pi.start_ip != 0 && pi.start_ip != ip - offset)
                name[0] = '\0';
            if (name[0] != '\0') {
                f.symbol = demangle(name);
                f.symbol_offset = offset;
            }
        }
        f.signal_frame = unw_is_signal_frame(&cursor) > 0;
        out.frames.push_back(std::move(f));
        r = unw_step(&cursor);
        if (r == 0)
            break;
        if (r < 0) {
            out.error = fmt::format("unw_step after frame {}: {}", out.frames.size() - 1, unw_error(r));
            break;
        }
    }
    return out;
}

}  // namespace criu
