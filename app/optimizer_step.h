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
#include "optim/lr_schedule.h"

namespace pt {

// (global tensor id, sum of squares) of the stage's gradients; the tied head copy
// is left out (it is counted once, as wte, on the first stage).
std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& stage);

// Applies AdamW with learning rate `lr` to grads·grad_scale; increments version.
// Does not zero the gradients.
void apply_stage_update(LocalStage& stage, const OptimizerSection& o, double lr, float grad_scale);

// The learning-rate schedule of the config (warm-up, decay over training.steps).
LrSchedule lr_schedule_for(const Config& c);

// An asynchronous stage's own update (STEP action and its replay): clips by the
// stage's gradient norm (tensor sums of squares added in ascending id), takes the
// learning rate of the stage's version, applies AdamW. Returns the squared norm.
// Does not zero the gradients.
double apply_stage_update_self_clipped(LocalStage& stage, const Config& c, const LrSchedule& lr);

// Optimizer state of a stage: its size in floats (0 = none held), and freeing it (AMDP
// non-owners in owner mode hold none).
size_t optimizer_state_floats(const LocalStage& stage);
void init_optimizer_state(LocalStage& stage, const OptimizerSection& o);
void release_optimizer_state(LocalStage& stage);

}  // namespace pt
