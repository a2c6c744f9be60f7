#include "criu/core/log.h"

#include <unistd.h>

namespace criu {

namespace {
const char* level_tag(LogLevel l) {
    switch (l) {
    case LogLevel::Error: return "Error";
    case LogLevel::Warn: return "Warn ";
    case LogLevel::Info: return "Info ";
    case LogLevel::Debug: return "Debug";
    }
    return "?";
}
}  // namespace

Log::Log(int console_level) : console_level_(console_level), start_(std::chrono::steady_clock::now()) {}

Log::~Log() {
    if (file_)
        std::fclose(file_);
}

bool Log::open_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "we");
    if (!f)
        return false;
    if (file_)
        std::fclose(file_);
    file_ = f;
    path_ = path;
    std::setvbuf(file_, nullptr, _IOLBF, 0);
    return true;
}

bool Log::enabled(LogLevel level, std::string_view module) const {
    int lvl = static_cast<int>(level);
    auto it = module_levels_.find(module);
    int limit = std::max(console_level_, file_ ? file_level_ : 0);
    if (it != module_levels_.end())
        limit = it->second;
    return lvl <= limit;
}

void Log::write(LogLevel level, std::string_view module, std::string_view message) {
    int lvl = static_cast<int>(level);
    auto it = module_levels_.find(module);
    if (it != module_levels_.end() && lvl > it->second)
        return;
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (file_ && lvl <= file_level_)
        fmt::print(file_, "({:10.6f}) {:>6} {} {}: {}\n", t, getpid(), level_tag(level), module, message);
    if (lvl <= console_level_) {
        if (level <= LogLevel::Warn)
            fmt::print(stderr, "{}: {}\n", level == LogLevel::Error ? "Error" : "Warning", message);
        else
            fmt::print(stderr, "({:.6f}) {}: {}\n", t, module, message);
    }
}

}  // namespace criu
