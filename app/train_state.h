// TrainState: everything a rank needs to continue training exactly: the step
// counter and, per stage it owns, the fp32 master parameters (inside the
// StageModel), the optimizer state and the version counters. RNG and data position
// are pure functions of (seed, step, micro-batch), so they are not state.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "model/stage_model.h"
#include "optim/optimizer.h"

namespace pt {

struct LocalStage {
  int stage = 0;                      // global stage index
  std::pair<int, int> layers;         // transformer blocks [first, last)
  std::unique_ptr<StageModel> model;  // params and grads
  // The optimizer's named state tensors (optim/optimizer.h), laid out as model's
  // params; null on a stage replica that does not own its stage's state (AMDP owner mode).
  std::unique_ptr<OptimizerState> optimizer_state;
  int64_t version = 0;                // optimizer updates applied to this stage
};

struct TrainState {
  int64_t step = 0;                   // optimizer steps completed (the next step's index)
  std::vector<LocalStage> local;      // ascending global stage
};

}  // namespace pt
