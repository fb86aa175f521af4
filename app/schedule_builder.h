// The lowered, validated schedule of a config: one optimizer step for synchronous
// kinds, one drained segment of `segment_updates` updates for asynchronous kinds.
// Shared by `train` and `plan`, so both run the same list.
#pragma once

#include <cstdint>

#include "app/config.h"
#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

Status build_lowered_schedule(const Config& c, int64_t segment_updates, Schedule* out);

}  // namespace pt
