// An address inside a traced process. It is a distinct type so that a local pointer can never be
// passed where an address in the target is meant (and the reverse): the only way to get a number
// out is addr(), the only way in is the explicit constructor.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <fmt/format.h>

namespace criu {

template <class T = void>
class remote_ptr {
public:
    constexpr remote_ptr() = default;
    constexpr explicit remote_ptr(uint64_t addr) : addr_(addr) {}

    constexpr uint64_t addr() const { return addr_; }
    constexpr bool is_null() const { return addr_ == 0; }
    constexpr explicit operator bool() const { return addr_ != 0; }

    // Pointer arithmetic in units of T (bytes for void), as for local pointers.
    constexpr remote_ptr operator+(std::ptrdiff_t n) const { return remote_ptr(addr_ + n * elem_size()); }
    constexpr remote_ptr operator-(std::ptrdiff_t n) const { return remote_ptr(addr_ - n * elem_size()); }
    constexpr remote_ptr& operator+=(std::ptrdiff_t n) { addr_ += n * elem_size(); return *this; }

    // Same address, another element type.
    template <class U>
    constexpr remote_ptr<U> cast() const { return remote_ptr<U>(addr_); }
    constexpr remote_ptr<void> as_void() const { return remote_ptr<void>(addr_); }

    constexpr auto operator<=>(const remote_ptr&) const = default;

private:
    static constexpr std::size_t elem_size() {
        if constexpr (std::is_void_v<T>)
            return 1;
        else
            return sizeof(T);
    }

    uint64_t addr_ = 0;
};

}  // namespace criu

// Formats as 0x7f12... so log lines and errors show target addresses uniformly.
template <class T>
struct fmt::formatter<criu::remote_ptr<T>> : fmt::formatter<std::string_view> {
    template <class Ctx>
    auto format(const criu::remote_ptr<T>& p, Ctx& ctx) const {
        return fmt::format_to(ctx.out(), "{:#x}", p.addr());
    }
};
