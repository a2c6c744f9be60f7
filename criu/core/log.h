// One log per operation (dump.log, restore.log): relative timestamps, pid prefix,
// a level per module. The log is an object carried by the operation's context,
// never a global.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace criu {

enum class LogLevel { Error = 1, Warn = 2, Info = 3, Debug = 4 };

class Log {
public:
    // Messages at or below `console_level` go to stderr; everything at or below
    // `file_level` goes to the log file once one is open.
    explicit Log(int console_level = 1);
    ~Log();
    Log(const Log&) = delete;
    Log& operator=(const Log&) = delete;

    // Opens (truncates) the log file. Returns false and leaves logging to stderr on failure.
    bool open_file(const std::string& path);
    const std::string& file_path() const { return path_; }

    void set_console_level(int level) { console_level_ = level; }
    void set_file_level(int level) { file_level_ = level; }
    void set_module_level(const std::string& module, int level) { module_levels_[module] = level; }

    void write(LogLevel level, std::string_view module, std::string_view message);

    template <class... A>
    void error(std::string_view module, fmt::format_string<A...> f, A&&... a) {
        write(LogLevel::Error, module, fmt::format(f, std::forward<A>(a)...));
    }
    template <class... A>
    void warn(std::string_view module, fmt::format_string<A...> f, A&&... a) {
        write(LogLevel::Warn, module, fmt::format(f, std::forward<A>(a)...));
    }
    template <class... A>
    void info(std::string_view module, fmt::format_string<A...> f, A&&... a) {
        if (enabled(LogLevel::Info, module))
            write(LogLevel::Info, module, fmt::format(f, std::forward<A>(a)...));
    }
    template <class... A>
    void debug(std::string_view module, fmt::format_string<A...> f, A&&... a) {
        if (enabled(LogLevel::Debug, module))
            write(LogLevel::Debug, module, fmt::format(f, std::forward<A>(a)...));
    }

    bool enabled(LogLevel level, std::string_view module) const;

private:
    int console_level_;
    int file_level_ = 4;
    std::map<std::string, int, std::less<>> module_levels_;
    std::FILE* file_ = nullptr;
    std::string path_;
    std::chrono::steady_clock::time_point start_;
};

}  // namespace criu
