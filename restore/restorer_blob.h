// The restorer blob binary (restore/blob/, built freestanding and embedded by blob_embed.S).
#pragma once

#include <cstdint>
#include <span>

namespace criu {

std::span<const uint8_t> restorer_blob_code();

}  // namespace criu
