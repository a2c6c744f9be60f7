#include "images/show.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <charconv>
#include <cstring>
#include <memory>

#include <google/protobuf/util/json_util.h>

#include "images/image_dir.h"
#include "images/page_reader.h"
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/inventory.pb.h"
#include "proto/ipc.pb.h"
#include "proto/mm.pb.h"
#include "proto/pagemap.pb.h"
#include "proto/pstree.pb.h"
#include "proto/stats.pb.h"

namespace criu {
namespace {

// Records of each image type. Naming the generated defaults here also makes sure the
// linker keeps every schema in the binary.
const google::protobuf::Message& prototype(ImageType t) {
    switch (t) {
    case ImageType::Inventory:
        return images::Inventory::default_instance();
    case ImageType::Pstree:
        return images::PstreeEntry::default_instance();
    case ImageType::Core:
        return images::TaskCore::default_instance();
    case ImageType::Mm:
        return images::MmInfo::default_instance();
    case ImageType::Pagemap:
        return images::PagemapEntry::default_instance();
    case ImageType::Files:
        return images::FileEntry::default_instance();
    case ImageType::Fdinfo:
        return images::FdEntry::default_instance();
    case ImageType::PipeData:
        return images::PipeData::default_instance();
    case ImageType::Fs:
        return images::FsInfo::default_instance();
    case ImageType::DumpStats:
        return images::DumpStats::default_instance();
    case ImageType::RestoreStats:
        return images::RestoreStats::default_instance();
    case ImageType::IpcNs:
        return images::IpcNamespace::default_instance();
    }
    return images::Inventory::default_instance();
}

// A JSON string literal. File names are arbitrary bytes: bytes that are not valid
// UTF-8 become U+FFFD so the document stays valid JSON.
std::string quote(std::string_view s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
            i++;
        } else if (c < 0x20) {
            out += fmt::format("\\u{:04x}", c);
            i++;
        } else if (c < 0x80) {
            out += char(c);
            i++;
        } else {
            size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            bool ok = n > 0 && i + n <= s.size();
            for (size_t k = 1; ok && k < n; k++)
                ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
            if (ok && n == 3) {  // no overlongs, no surrogates
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
            }
            if (ok && n == 4) {
                auto c1 = static_cast<unsigned char>(s[i + 1]);
                ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
            }
            if (ok) {
                out.append(s.substr(i, n));
                i += n;
            } else {
                out += "\\ufffd";
                i++;
            }
        }
    }
    return out + "\"";
}

Expected<std::string> to_json(const google::protobuf::Message& m) {
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    o.always_print_primitive_fields = true;
    std::string out;
    auto st = google::protobuf::util::MessageToJsonString(m, &out, o);
    if (!st.ok())
        return failf(EINVAL, "cannot render {} as JSON: {}", m.GetTypeName(), std::string(st.message()));
    return out;
}

// struct user_regs_struct of x86-64, in order.
constexpr const char* kRegNames[] = {"r15", "r14", "r13", "r12", "rbp",      "rbx",     "r11", "r10", "r9",
                                     "r8",  "rax", "rcx", "rdx", "rsi",      "rdi",     "orig_rax", "rip", "cs",
                                     "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es",  "fs",  "gs"};

std::string decode_regs(const images::TaskCore& core) {
    std::string out = "[";
    for (int t = 0; t < core.threads_size(); t++) {
        const auto& th = core.threads(t);
        out += fmt::format("{}{{\"tid\":{}", t ? "," : "", th.tid());
        const std::string& g = th.gpregs();
        if (g.size() != sizeof(kRegNames) / sizeof(kRegNames[0]) * 8) {
            out += fmt::format(",\"error\":\"gpregs is {} bytes, expected {}\"}}", g.size(),
                               sizeof(kRegNames) / sizeof(kRegNames[0]) * 8);
            continue;
        }
        for (size_t r = 0; r < sizeof(kRegNames) / sizeof(kRegNames[0]); r++) {
            uint64_t v;
            std::memcpy(&v, g.data() + r * 8, 8);
            out += fmt::format(",\"{}\":\"{:#x}\"", kRegNames[r], v);
        }
        out += "}";
    }
    return out + "]";
}

// Reads every record of a typed image into a JSON object; a read error ends the
// records and is recorded (or returned, with `strict`).
Expected<std::string> show_image(const ImageDir& dir, const std::string& name, const ImageTypeInfo& info,
                                 bool decode_registers, bool strict) {
    std::string out = fmt::format("{{\"file\":{},\"type\":{},\"records\":[", quote(name), quote(info.prefix));
    std::string error, extra;
    uint64_t totals[5] = {};  // entries, present, zero, parent, lazy pages
    uint64_t stored = 0;
    auto reader = ImageReader::open_at(dir.fd(), name, info.type, dir.file_path(name));
    if (!reader) {
        if (strict)
            return std::unexpected(reader.error());
        error = reader.error().str();
    }
    std::string regs;
    for (size_t n = 0; reader && error.empty(); n++) {
        // A pagemap starts with its head; every other image has one record type.
        std::unique_ptr<google::protobuf::Message> msg(
            info.type == ImageType::Pagemap && n == 0 ? images::PagemapHead::default_instance().New()
                                                      : prototype(info.type).New());
        auto got = reader->read(*msg);
        if (!got) {
            if (strict)
                return std::unexpected(got.error());
            error = got.error().str();
            break;
        }
        if (!*got)
            break;
        auto js = to_json(*msg);
        if (!js) {
            error = js.error().str();
            break;
        }
        out += (n ? "," : "") + *js;
        if (info.type == ImageType::Pagemap && n > 0) {
            const auto& e = static_cast<const images::PagemapEntry&>(*msg);
            totals[0]++;
            for (int k = 0; k < 4; k++)
                if (e.flags() & (1u << k))
                    totals[k + 1] += e.nr_pages();
            stored += e.stored_size();
        }
        if (decode_registers && info.type == ImageType::Core)  // one TaskCore per core image
            regs = decode_regs(static_cast<const images::TaskCore&>(*msg));
    }
    out += "]";
    if (info.type == ImageType::Pagemap) {
        out += fmt::format(
            ",\"totals\":{{\"entries\":{},\"present_pages\":{},\"parent_pages\":{},\"zero_pages\":{},"
            "\"lazy_pages\":{},\"stored_bytes\":{}}}",
            totals[0], totals[1], totals[2], totals[3], totals[4], stored);
        int64_t id = -1;
        const char* digits = name.c_str() + std::strlen("pagemap-");
        auto [end, ec] = std::from_chars(digits, name.c_str() + name.size(), id);
        if (error.empty() && ec == std::errc() && std::string_view(end) == ".img") {
            auto pr = PageReader::open(dir, id, true);
            out += ",\"check\":" + quote(pr ? std::string("ok") : pr.error().str());
        }
    }
    if (!regs.empty())
        out += ",\"registers\":" + regs;
    if (!error.empty())
        out += ",\"error\":" + quote(error);
    return out + "}";
}

// pages-<id>.img: a summary, never the bytes.
Expected<std::string> show_pages(const ImageDir& dir, const std::string& name, bool strict) {
    std::string path = dir.file_path(name);
    std::string out = fmt::format("{{\"file\":{},\"type\":\"pages\"", quote(name));
    auto fail_or_embed = [&](const Error& e) -> Expected<std::string> {
        if (strict)
            return std::unexpected(e);
        return out + ",\"error\":" + quote(e.str()) + "}";
    };
    int fd = ::openat(dir.fd(), name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_or_embed(Error(errno, path + ": cannot open"));
    UniqueFd ufd(fd);
    struct stat st;
    if (::fstat(fd, &st) < 0)
        return fail_or_embed(Error(errno, path + ": fstat failed"));
    uint64_t size = static_cast<uint64_t>(st.st_size);
    out += fmt::format(",\"size\":{}", size);
    char block[kPagesHeaderSize];
    auto got = pread_full(fd, block, sizeof block, 0, path);
    if (!got)
        return fail_or_embed(got.error());
    auto h = decode_pages_header(block, *got, path);
    if (!h)
        return fail_or_embed(h.error());
    out += fmt::format(",\"format\":\"{}.{}\",\"codec\":\"{}\"", h->major, h->minor, codec_name(h->codec));
    if (h->codec == images::CODEC_RAW) {
        out += fmt::format(",\"pages\":{}", (size - kPagesHeaderSize) / kPageSize);
        return out + "}";
    }
    // Frames do not say how many pages they hold without decoding; the pagemap does.
    std::string stem = name.substr(std::strlen("pages-"));
    auto r = ImageReader::open_at(dir.fd(), "pagemap-" + stem, ImageType::Pagemap, dir.file_path("pagemap-" + stem));
    if (r) {
        uint64_t pages = 0, frames = 0;
        images::PagemapHead head;
        images::PagemapEntry e;
        bool ok = r->read(head).value_or(false);
        while (ok) {
            auto g = r->read(e);
            if (!g || !*g) {
                ok = g.has_value();
                break;
            }
            if (e.flags() & images::PE_PRESENT) {
                pages += e.nr_pages();
                frames++;
            }
        }
        if (ok)
            out += fmt::format(",\"pages\":{},\"frames\":{}", pages, frames);
    }
    return out + "}";
}

bool is_pages_file(const std::string& name) {
    constexpr std::string_view pre = "pages-", ext = ".img";
    if (name.size() <= pre.size() + ext.size() || !name.starts_with(pre) || !name.ends_with(ext))
        return false;
    for (size_t i = pre.size(); i < name.size() - ext.size(); i++)
        if (name[i] < '0' || name[i] > '9')
            return false;
    return true;
}

Expected<std::string> show_file(const ImageDir& dir, const std::string& name, bool decode_registers, bool strict) {
    if (is_pages_file(name))
        return show_pages(dir, name, strict);
    const auto* info = image_type_by_name(name);
    if (!info) {
        if (strict)
            return failf(EINVAL, "{}: not an image file name this criu knows", dir.file_path(name));
        return fmt::format("{{\"file\":{},\"type\":\"unknown\"}}", quote(name));
    }
    return show_image(dir, name, *info, decode_registers, strict);
}

}  // namespace

Expected<std::string> show_path_json(const std::string& path, bool decode_registers) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0)
        return fail_errno("{}: cannot stat", path);
    if (S_ISDIR(st.st_mode)) {
        auto dir = TRY(ImageDir::open(path));
        std::string out = fmt::format("{{\"dir\":{},\"images\":[", quote(path));
        bool first = true;
        for (const auto& name : TRY(dir.list_files())) {
            out += first ? "" : ",";
            out += TRY(show_file(dir, name, decode_registers, false));
            first = false;
        }
        return out + "]}";
    }
    auto slash = path.rfind('/');
    std::string dir_path = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    auto dir = TRY(ImageDir::open(dir_path));
    return show_file(dir, name, decode_registers, true);
}

}  // namespace criu
