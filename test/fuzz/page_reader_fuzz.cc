// libFuzzer target: PageReader validation and decoding, and `criu show` on the result.
// Input: u32 length L | L bytes of pagemap-1.img | the rest is pages-1.img. Both are
// written to a private directory (tmpfs when there is one) and opened like a real dump.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "images/page_reader.h"
#include "images/show.h"

namespace {

std::string g_dir;

void cleanup() {
    if (g_dir.empty())
        return;
    ::unlink((g_dir + "/pagemap-1.img").c_str());
    ::unlink((g_dir + "/pages-1.img").c_str());
    ::rmdir(g_dir.c_str());
}

void put(const std::string& name, const uint8_t* p, size_t n) {
    int fd = ::open((g_dir + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (n && ::write(fd, p, n) != ssize_t(n))
        abort();
    ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);
    std::string tmpl = (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/criu-fuzz-XXXXXX");
    if (!::mkdtemp(tmpl.data()))
        abort();
    g_dir = tmpl;
    atexit(cleanup);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4)
        return 0;
    uint32_t len;
    std::memcpy(&len, data, 4);
    len = std::min<uint32_t>(len, uint32_t(size - 4));
    put("pagemap-1.img", data + 4, len);
    put("pages-1.img", data + 4 + len, size - 4 - len);

    auto dir = criu::ImageDir::open(g_dir);
    if (!dir)
        abort();
    auto r = criu::PageReader::open(*dir, 1, true);
    if (r) {
        std::vector<char> buf;
        for (const auto& e : r->entries()) {
            // Zero runs may be huge and legitimately so; only read bounded ones.
            if (e.nr_pages > 2048)
                continue;
            buf.resize(e.size());
            (void)r->read_pages(e, buf.data());
            if (e.nr_pages > 1)  // a partial range goes through the frame cache
                (void)r->read_range(e.vaddr + criu::kPageSize, 1, buf.data());
        }
    }
    // show is slow (protobuf's JSON printer builds a type resolver per message), so it
    // runs on one input in eight; which ones depends only on the input.
    if (size % 8 != 0)
        return 0;
    auto js = criu::show_path_json(g_dir);
    if (!js)
        __builtin_trap();  // a directory always shows, errors go inside the document
    return 0;
}
