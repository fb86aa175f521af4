// One optimizer update of one stage: AdamW over every tensor of the stage with the
// decoupled weight decay policy of the config, bias correction from the stage's own
// version counter, then version += 1. Shared by the synchronous step, the
// asynchronous STEP actions and the single-process replay, so all three apply
// bit-identical updates.
#pragma once

#include <utility>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"

namespace pt {

// (global tensor id, sum of squares) of the stage's gradients; the tied head copy
// is left out (it is counted once, as wte, on the first stage).
std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& stage);

// Applies AdamW with learning rate `lr` to grads·grad_scale; increments version.
// Does not zero the gradients.
void apply_stage_update(LocalStage& stage, const OptimizerSection& o, double lr, float grad_scale);

}  // namespace pt
