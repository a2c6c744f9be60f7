#include "criu/core/error.h"

#include <cstring>

namespace criu {

std::string Error::str() const {
    std::string out;
    for (auto it = contexts_.rbegin(); it != contexts_.rend(); ++it) {
        out += *it;
        out += ": ";
    }
    out += message_;
    if (err_ != 0) {
        out += ": ";
        out += std::strerror(err_);
    }
    return out;
}

}  // namespace criu
