// The text `pipetrain plan` prints for one schedule: resolved config (when given), layer split, the
// per-rank lowered action lists, the unit-time ASCII timeline, predicted bubble fraction, peak
// in-flight activations per rank and stage, and the predicted step time under the calibrated cost
// model. Pure formatting of results the caller computed; no MPI, no GPU.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "pipeline/action.h"
#include "pipeline/simulate.h"

namespace pt {

struct PlanReportInputs {
  std::string resolved_config;  // printed verbatim first when non-empty
  std::vector<std::pair<int, int>>
      layer_ranges;                       // per global stage [first, end) layer; empty = not shown
  const SimResult* cost_model = nullptr;  // simulation under the calibrated cost model; null = none
  std::string cost_model_unit = "s";      // unit of cost_model times
  int max_actions_per_rank = 48;          // action listing cut (the full list is in the trace)
  int max_grid_columns = 160;             // ASCII timeline cut
};

// `lowered` is the lowered schedule, `unit_time` its simulation under CostModel::uniform (F=1,
// B=2).
std::string plan_report(const Schedule& lowered, const SimResult& unit_time,
                        const PlanReportInputs& inputs);

}  // namespace pt
