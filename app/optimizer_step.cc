#include "app/optimizer_step.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/check.h"
#include "optim/grad_norm.h"
#include "optim/registry.h"

namespace pt {

std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& ls) {
  ls.model->sync_grads_to_host();  // host read of grads() (no-op on the CPU backend)
  std::vector<std::pair<int, double>> out;
  for (const auto& t : ls.model->tensors()) {
    if (t.is_tied_head) continue;
    out.push_back({t.global_id, sum_of_squares(ls.model->grads() + t.offset, t.numel)});
  }
  return out;
}

namespace {

// The optimizer's view of the stage's tensors (optim/ does not see model/).
std::vector<OptimTensor> optim_layout(const StageModel& m) {
  std::vector<OptimTensor> out;
  for (const auto& t : m.tensors()) out.push_back(OptimTensor{t.name, t.offset, t.numel, t.shape, t.weight_decay});
  return out;
}

}  // namespace

std::unique_ptr<Optimizer> optimizer_for(const OptimizerSection& o) {
  OptimizerOptions opts;
  opts.beta1 = o.beta1;
  opts.beta2 = o.beta2;
  opts.eps = o.eps;
  opts.weight_decay = o.weight_decay;
  opts.decay_embeddings = o.decay_embeddings;
  opts.momentum_decay = o.momentum_decay;
  opts.basis_rotation = o.basis_rotation;
  std::unique_ptr<Optimizer> opt;
  const Status s = make_optimizer(o.kind, opts, &opt);
  PT_CHECK_MSG(s.is_ok(), s.message() + " (the config loader should have refused it)");
  return opt;
}

std::unique_ptr<OptimizerState> make_optimizer_state(const OptimizerSection& o, const StageModel& model) {
  return optimizer_for(o)->make_state(optim_layout(model), model.num_params(), MemorySpace::kHost);
}

size_t optimizer_state_floats(const OptimizerSection& o, const StageModel& model) {
  return optimizer_for(o)->state_floats(optim_layout(model), model.num_params());
}

// The optimizer runs on the host on every backend: grads() are brought to the host
// and the new params() sent back (stage_model.h, host/device contract). A kDevice
// optimizer state stepping device buffers (optim/cuda/adamw_state.h) skips both
// transfers once StageModel exposes its device pointers.
void apply_stage_update(LocalStage& ls, const OptimizerSection& o, double lr, float grad_scale) {
  PT_CHECK_MSG(ls.optimizer_state != nullptr, "stage " + std::to_string(ls.stage) + " has no optimizer state to step");
  ls.model->sync_grads_to_host();
  const StageBuffers b{ls.model->params(), ls.model->grads(), ls.model->num_params(), MemorySpace::kHost, nullptr};
  optimizer_for(o)->step(*ls.optimizer_state, b, StepArgs{lr, grad_scale, ls.version + 1});
  ls.model->sync_params_to_device();
  ++ls.version;
}

LrSchedule lr_schedule_for(const Config& c) {
  const OptimizerSection& o = c.optimizer;
  LrSchedule lr{o.lr_schedule, o.lr, o.min_lr_ratio, o.warmup_steps, c.training.steps};
  if (c.schedule.pipedream_lr_correction == "stagewise") {  // PipeDream-LR (lr_schedule.h)
    lr.stagewise_stages = c.parallel.pp * c.schedule.chunks;
    lr.stagewise_accumulation = c.training.microbatches;
    const int64_t t = c.schedule.pipedream_lr_correction_steps;
    lr.stagewise_steps = t > 0 ? t : c.training.steps;
  }
  return lr;
}

double stage_norm_sq(const LocalStage& ls) {
  std::vector<std::pair<int, double>> sq = stage_grad_sumsq(ls);
  std::sort(sq.begin(), sq.end());
  double total = 0.0;
  for (const auto& e : sq) total += e.second;
  return total;
}

double apply_stage_update_self_clipped(LocalStage& ls, const Config& c, const LrSchedule& lr, int64_t lr_step) {
  const double total = stage_norm_sq(ls);
  if (!std::isfinite(total)) {  // left out: parameters and optimizer state stay as they were
    ++ls.version;
    return total;
  }
  apply_stage_update(ls, c.optimizer, stage_learning_rate(lr, ls.stage, lr_step >= 0 ? lr_step : ls.version),
                     clip_scale(std::sqrt(total), c.optimizer.grad_clip));
  return total;
}

}  // namespace pt
