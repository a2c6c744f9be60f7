// Recoverable errors as values: std::expected<T, Error>. An Error keeps the
// innermost cause (errno + message) and the chain of contexts added on the way up,
// so a user sees "while dumping pid 4211: fd 7: io_uring ..." and not just "-1".
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace criu {

class [[nodiscard]] Error {
public:
    Error(int err, std::string message) : err_(err), message_(std::move(message)) {}

    int err() const { return err_; }
    const std::string& message() const { return message_; }
    const std::vector<std::string>& contexts() const { return contexts_; }

    // Adds an outer context ("while dumping pid 12"); the innermost cause stays.
    Error& add_context(std::string ctx) {
        contexts_.push_back(std::move(ctx));
        return *this;
    }

    // "outer: inner: message: strerror(err)"
    std::string str() const;

private:
    int err_ = 0;
    std::string message_;
    std::vector<std::string> contexts_;  // innermost first
};

template <class T>
using Expected = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(int err, std::string message) {
    return std::unexpected<Error>(Error(err, std::move(message)));
}

template <class... Args>
std::unexpected<Error> failf(int err, fmt::format_string<Args...> f, Args&&... args) {
    return fail(err, fmt::format(f, std::forward<Args>(args)...));
}

// Captures errno at the call site.
template <class... Args>
std::unexpected<Error> fail_errno(fmt::format_string<Args...> f, Args&&... args) {
    int e = errno;
    return fail(e, fmt::format(f, std::forward<Args>(args)...));
}

// Adds context to the error of an Expected, passes a value through.
template <class T>
Expected<T> with_context(Expected<T>&& r, std::string ctx) {
    if (!r)
        r.error().add_context(std::move(ctx));
    return std::move(r);
}

}  // namespace criu

// Propagates an error out of the enclosing function returning Expected<...>.
// GNU statement expression: the value of TRY(e) is *e.
#define TRY(expr)                                                        \
    ({                                                                   \
        auto&& try_result_ = (expr);                                     \
        if (!try_result_)                                                \
            return std::unexpected<::criu::Error>(std::move(try_result_.error())); \
        std::move(*try_result_);                                         \
    })

// Same, for Expected<void>.
#define TRY_VOID(expr)                                                   \
    do {                                                                 \
        auto&& try_result_ = (expr);                                     \
        if (!try_result_)                                                \
            return std::unexpected<::criu::Error>(std::move(try_result_.error())); \
    } while (0)

// Same, adding a context string on the way up.
#define TRY_CTX(expr, ...)                                               \
    ({                                                                   \
        auto&& try_result_ = (expr);                                     \
        if (!try_result_) {                                              \
            auto try_err_ = std::move(try_result_.error());              \
            try_err_.add_context(fmt::format(__VA_ARGS__));              \
            return std::unexpected<::criu::Error>(std::move(try_err_));  \
        }                                                                \
        std::move(*try_result_);                                         \
    })

#define TRY_VOID_CTX(expr, ...)                                          \
    do {                                                                 \
        auto&& try_result_ = (expr);                                     \
        if (!try_result_) {                                              \
            auto try_err_ = std::move(try_result_.error());              \
            try_err_.add_context(fmt::format(__VA_ARGS__));              \
            return std::unexpected<::criu::Error>(std::move(try_err_));  \
        }                                                                \
    } while (0)
