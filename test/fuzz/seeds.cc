// Writes the seed corpus of the fuzz targets: well-formed images of every type, and
// page stores (raw, zstd, with zero/parent/lazy entries) in the page reader's format.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "images/page_writer.h"
#include "proto/core.pb.h"
#include "proto/files.pb.h"
#include "proto/mm.pb.h"
#include "proto/pstree.pb.h"

namespace {

std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void emit(const std::string& path, const std::string& data) {
    std::ofstream(path, std::ios::binary) << data;
}

int fail(const criu::Error& e) {
    std::fprintf(stderr, "%s\n", e.str().c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace criu;
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <image_reader corpus dir> <page_reader corpus dir>\n", argv[0]);
        return 2;
    }
    std::string ir = argv[1], pr = argv[2];
    char tmpl[] = "/tmp/criu-seeds-XXXXXX";
    if (!::mkdtemp(tmpl))
        return 1;
    auto dir = ImageDir::open(tmpl);
    if (!dir)
        return fail(dir.error());

    images::TaskCore core;
    core.set_pid(42);
    core.set_comm("seed");
    auto* th = core.add_threads();
    th->set_tid(42);
    th->set_gpregs(std::string(216, '\1'));
    th->add_pending()->set_siginfo(std::string(128, '\2'));
    images::MmInfo mm;
    auto* vma = mm.add_vmas();
    vma->set_start(0x400000);
    vma->set_end(0x401000);
    vma->set_path("/bin/true");
    images::PstreeEntry ps;
    ps.set_pid(42);
    ps.add_threads(42);
    images::FileEntry fe;
    fe.set_id(1);
    fe.mutable_reg()->set_path("/etc/hosts");
    const auto& types = all_image_types();
    for (size_t i = 0; i < types.size(); i++) {
        std::string path = std::string(tmpl) + "/seed.img";
        auto w = ImageWriter::create(path, types[i].type);
        if (!w)
            return fail(w.error());
        switch (types[i].type) {
        case ImageType::Core: (void)w->write(core); break;
        case ImageType::Mm: (void)w->write(mm); break;
        case ImageType::Pstree: (void)w->write(ps); (void)w->write(ps); break;
        case ImageType::Files: (void)w->write(fe); break;
        default: break;
        }
        if (auto st = w->close(); !st)
            return fail(st.error());
        emit(ir + "/" + types[i].prefix, std::string(1, char(i)) + slurp(path));
    }

    std::vector<char> pages(8 * kPageSize);
    for (size_t i = 0; i < pages.size(); i++)
        pages[i] = char(i * 7 / 4096 + (i % 13 == 0));
    for (auto codec : {images::CODEC_RAW, images::CODEC_ZSTD}) {
        PageWriterOptions o;
        o.codec = codec;
        o.frame_pages = 4;
        auto w = PageWriter::create(*dir, 1, o);
        if (!w)
            return fail(w.error());
        (void)w->add_pages(0x400000, pages.data(), 6);
        (void)w->add_zero(0x406000, 3);
        (void)w->add_pages(0x500000, pages.data(), 2, true);
        if (auto st = w->finish(); !st)
            return fail(st.error());
        std::string map = slurp(std::string(tmpl) + "/pagemap-1.img");
        std::string data = slurp(std::string(tmpl) + "/pages-1.img");
        uint32_t len = uint32_t(map.size());
        std::string seed(reinterpret_cast<const char*>(&len), 4);
        emit(pr + "/" + codec_name(codec), seed + map + data);
    }
    for (const char* f : {"seed.img", "pagemap-1.img", "pages-1.img"})
        ::unlink((std::string(tmpl) + "/" + f).c_str());
    ::rmdir(tmpl);
    return 0;
}
