// `pipetrain plan`: a dry run of a config's pipeline. Needs no MPI and no GPU:
// it validates the config, builds, lowers, validates and simulates the schedule,
// and prints the layer split, the per-rank action grid, the predicted bubble
// fraction, peak in-flight activations per rank and the predicted step time;
// it writes a Chrome/Perfetto trace of the planned timeline.
//
// Without a cost file the step time is in block-forward units (F = B_input = B_weight
// = the stage's blocks, + the head). With `--costs FILE` (written by `pipetrain bench`)
// the stage costs, message times and optimizer time are the measured seconds, and the
// prediction is printed in ms and tokens/s.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

// ranks_override > 0 replaces parallel.pp; trace_path empty = run dir/plan_trace.json;
// costs_path empty = the unit cost model. time_budget >= 0 also prints the simulated-time
// budget match (pipeline/time_budget.h) under the costs of metrics.jsonl's sim_time (unit
// costs, or training.sim_costs): for the config's kind and for every registered kind with
// the config otherwise unchanged.
Status run_plan_command(const std::string& config_path, const std::vector<std::string>& overrides, int ranks_override,
                        const std::string& trace_path, const std::string& costs_path = "", double time_budget = -1);

}  // namespace pt
