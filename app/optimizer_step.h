// One optimizer update of one stage: the optimizer of optimizer.kind (optim/registry.h)
// over the stage's parameters with its state (LocalStage::optimizer), bias correction
// from the stage's own version counter, then version += 1. Shared by the synchronous
// step, the asynchronous STEP actions and the single-process replay, so all three
// apply bit-identical updates.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"

namespace pt {

// (global tensor id, sum of squares) of the stage's gradients; the tied head copy
// is left out (it is counted once, as wte, on the first stage).
std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& stage);

// The optimizer of the config (optimizer.kind, validated by the config loader).
std::unique_ptr<Optimizer> optimizer_for(const OptimizerSection& o);

// Zeroed optimizer state for `model`'s layout (host memory: params()/grads() are host).
std::unique_ptr<OptimizerState> make_optimizer_state(const OptimizerSection& o, const StageModel& model);

// Floats of optimizer state a stage of `model` holds when it owns its state (none allocated).
size_t optimizer_state_floats(const OptimizerSection& o, const StageModel& model);

// Applies the optimizer with learning rate `lr` to grads·grad_scale; increments
// version. The stage must hold state. Does not zero the gradients.
void apply_stage_update(LocalStage& stage, const OptimizerSection& o, double lr, float grad_scale);

// The learning-rate schedule of the config (warm-up, decay over training.steps; with
// schedule.pipedream.lr_correction: stagewise, the PipeDream-LR correction of the async STEP).
LrSchedule lr_schedule_for(const Config& c);

// An asynchronous stage's own update (STEP action and its replay): clips by the
// stage's gradient norm (tensor sums of squares added in ascending id), takes the
// learning rate of the stage and its version (stage_learning_rate), applies the optimizer.
// A non-finite norm leaves the update out (parameters and optimizer state unchanged; the
// version still advances), as training.on_nonfinite requires of the run and of its
// replay. Returns the squared norm. Does not zero the gradients. `lr_step` >= 0 takes
// the learning rate of that step instead of the version's (block-coordinate kinds: the
// global update, schedules.h).
double apply_stage_update_self_clipped(LocalStage& stage, const Config& c, const LrSchedule& lr, int64_t lr_step = -1);

// The stage's squared gradient norm: tensor sums of squares added in ascending id (the tied
// head copy left out), as apply_stage_update_self_clipped clips by.
double stage_norm_sq(const LocalStage& stage);


}  // namespace pt
