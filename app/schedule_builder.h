// The lowered, validated schedule of a config: one optimizer step for synchronous
// kinds, one drained segment of `segment_updates` updates for asynchronous kinds.
// Shared by `train` and `plan`, so both run the same list.
#pragma once

#include <cstdint>

#include "app/config.h"
#include "common/status.h"
#include "pipeline/action.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/topology.h"

#include <utility>
#include <vector>

namespace pt {

// The schedule keys of a config (and the model/training keys the schedule checks read).
// `first_update`: the global index of the segment's first update (block-coordinate kinds draw
// from it; the others ignore it).
ScheduleSpec schedule_spec_for(const Config& c, int64_t segment_updates = 1, int64_t first_update = 0);

Status build_lowered_schedule(const Config& c, int64_t segment_updates, Schedule* out, int64_t first_update = 0);

// Asynchronous runs drain at evaluations (when data.val is set), checkpoints,
// schedule.drain_every and the end: the first drain point after `step`, so the
// segment starting at `step` has next_drain_step(c, step) - step updates.
int64_t next_drain_step(const Config& c, int64_t step);

// The stage costs the layer split balances: blocks, plus the LM head on the last
// stage (V/(12·C) blocks of work); the embedding lookup is counted as free.
SplitCosts config_split_costs(const Config& c);

// Blocks [first, last) of each of `model_stages` stages (parallel.layer_split or auto).
Status split_layers_for_config(const Config& c, int model_stages, std::vector<std::pair<int, int>>* ranges);

}  // namespace pt
