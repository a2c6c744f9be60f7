// Reports from the restored process (blob or its libc prologue) to criu, and the words a user
// reads when one says a step failed: "pid 42: restorer failed mapping vma 3 (0x7f..-0x7f..
// /usr/lib/x/libc.so.6): Permission denied".
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "criu/core/error.h"
#include "restore/blob/blob_abi.h"
#include "restore/blob_args.h"
#include "restore/process_images.h"

namespace criu {

const char* blob_step_name(uint32_t step);

struct ReportRead {
    enum Kind { Got, Empty, Eof } kind = Empty;  // Empty: non-blocking fd, nothing queued
    blob_report report{};
};
// Reads one whole report; Eof when every writer is gone.
Expected<ReportRead> read_blob_report(int fd);

// The failure a report describes, with the detail decoded against what was sent to the blob.
Error report_to_error(const blob_report& r, const BlobArgs& args, const RestoredProcessImages& p);

}  // namespace criu
