// Where the blob area goes: an address range free both in the restorer (criu's copy, which the
// child inherits) and in the dumped layout, so the area survives the switch from one to the
// other. The middle of the largest common gap keeps it clear of heap growth, stack guard
// gaps and the restorer's own later allocations.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "criu/core/error.h"
#include "proto/mm.pb.h"

namespace criu {

// [start, end) ranges taken in the restorer, from /proc/self/maps text.
Expected<std::vector<std::pair<uint64_t, uint64_t>>> parse_maps_ranges(const std::string& maps_text);

Expected<uint64_t> find_blob_hole(const images::MmInfo& target,
                                  const std::vector<std::pair<uint64_t, uint64_t>>& own, uint64_t size);

}  // namespace criu
