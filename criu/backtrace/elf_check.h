// Which files may be handed to libunwind. The images name the files (any path on this
// host), and libunwind 1.6 maps each one whole and trusts much of what its headers say:
// symbol tables, the strings they point into, section names and the dynamic section are
// read without bounds checks, and a zero sh_entsize makes its symbol walk loop forever.
// This check makes every one of those reads land inside the file first.
#pragma once

#include <string>

#include "criu/core/error.h"

namespace criu {

// True for a well-formed 64-bit little-endian ELF file, false for a file that is no ELF
// file at all (locale-archive, fonts: nothing to unwind there), an error saying what is
// wrong with a malformed one. Reads through `fd` (pread), never maps it.
Expected<bool> check_elf_for_libunwind(int fd, const std::string& path);

}  // namespace criu
