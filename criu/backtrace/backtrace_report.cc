#include "criu/backtrace/backtrace_report.h"

#include <fmt/format.h>

namespace criu {
namespace {

// Length of the well-formed UTF-8 sequence at s[i], or 0 if the bytes there are not one
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence_length(const std::string& s, size_t i) {
    auto byte = [&](size_t k) -> unsigned { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0x100; };
    auto cont = [&](size_t k) { return (byte(k) & 0xC0) == 0x80 && byte(k) < 0x100; };
    unsigned c = byte(i);
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return cont(i + 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned c1 = byte(i + 1);
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F))
            return 0;
        return cont(i + 1) && cont(i + 2) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned c1 = byte(i + 1);
        if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
            return 0;
        return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    return 0;
}

// Paths and names come from the images and may hold any bytes: control characters are
// escaped and bytes that are not UTF-8 become U+FFFD, so the output always parses.
void append_json_string(std::string& out, const std::string& s) {
    out += '"';
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            out += fmt::format("\\u{:04x}", c);
            i++;
        } else if (size_t n = utf8_sequence_length(s, i); n > 0) {
            out.append(s, i, n);
            i += n;
        } else {
            out += "\\ufffd";
            i++;
        }
    }
    out += '"';
}

std::string hex(uint64_t v) { return fmt::format("\"0x{:x}\"", v); }

void append_frame_json(std::string& out, const BacktraceFrame& f) {
    out += fmt::format("{{\"ip\":{},\"sp\":{},\"symbol\":", hex(f.ip), hex(f.sp));
    if (f.symbol.empty()) {
        out += "null";
    } else {
        append_json_string(out, f.symbol);
        out += fmt::format(",\"symbol_offset\":{}", f.symbol_offset);
    }
    out += ",\"module\":";
    if (f.module.empty())
        out += "null";
    else
        append_json_string(out, f.module);
    if (f.module_offset)
        out += fmt::format(",\"module_offset\":{}", hex(*f.module_offset));
    out += fmt::format(",\"signal_frame\":{}", f.signal_frame ? "true" : "false");
    out += '}';
}

void append_error_json(std::string& out, const std::string& error) {
    out += ",\"error\":";
    if (error.empty())
        out += "null";
    else
        append_json_string(out, error);
}

// Text output goes to a terminal: control bytes from an image must not move the cursor.
std::string printable(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7F)
            out += fmt::format("\\x{:02x}", c);
        else
            out += ch;
    }
    return out;
}

}  // namespace

std::string backtraces_to_json(const BacktraceReport& report) {
    std::string out = "{\"dir\":";
    append_json_string(out, report.dir);
    out += ",\"processes\":[";
    for (size_t p = 0; p < report.processes.size(); p++) {
        const ProcessBacktrace& proc = report.processes[p];
        if (p)
            out += ',';
        out += fmt::format("{{\"pid\":{},\"comm\":", proc.pid);
        append_json_string(out, proc.comm);
        append_error_json(out, proc.error);
        out += ",\"warnings\":[";
        for (size_t w = 0; w < proc.warnings.size(); w++) {
            if (w)
                out += ',';
            append_json_string(out, proc.warnings[w]);
        }
        out += "],\"threads\":[";
        for (size_t t = 0; t < proc.threads.size(); t++) {
            const ThreadBacktrace& th = proc.threads[t];
            if (t)
                out += ',';
            out += fmt::format("{{\"tid\":{}", th.tid);
            append_error_json(out, th.error);
            out += ",\"frames\":[";
            for (size_t f = 0; f < th.frames.size(); f++) {
                if (f)
                    out += ',';
                append_frame_json(out, th.frames[f]);
            }
            out += "]}";
        }
        out += "]}";
    }
    out += "]}";
    return out;
}

std::string backtraces_to_text(const BacktraceReport& report) {
    std::string out;
    for (const ProcessBacktrace& proc : report.processes) {
        out += fmt::format("pid {} ({})\n", proc.pid, printable(proc.comm));
        for (const std::string& w : proc.warnings)
            out += fmt::format("  warning: {}\n", printable(w));
        if (!proc.error.empty())
            out += fmt::format("  error: {}\n", printable(proc.error));
        for (const ThreadBacktrace& th : proc.threads) {
            out += fmt::format("  thread {}\n", th.tid);
            for (size_t i = 0; i < th.frames.size(); i++) {
                const BacktraceFrame& f = th.frames[i];
                std::string where = f.signal_frame     ? std::string("<signal handler called>")
                                    : f.symbol.empty() ? std::string("??")
                                                       : fmt::format("{}+0x{:x}", printable(f.symbol), f.symbol_offset);
                std::string module = f.module.empty() ? std::string() : fmt::format(" ({})", printable(f.module));
                out += fmt::format("    #{:<2} 0x{:016x} in {}{} sp=0x{:x}\n", i, f.ip, where, module, f.sp);
            }
            if (!th.error.empty())
                out += fmt::format("    (stopped: {})\n", printable(th.error));
        }
    }
    return out;
}

}  // namespace criu
