#include "app/optimizer_step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "optim/grad_norm.h"
#include "optim/registry.h"

namespace pt {

std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& ls) {
  const std::vector<ParamTensor>& tensors = ls.model->tensors();
  std::vector<double> sq(tensors.size());
  ls.model->grad_sums_of_squares(sq.data());  // on the backend; only these doubles reach the host
  std::vector<std::pair<int, double>> out;
  for (size_t k = 0; k < tensors.size(); ++k)
    if (!tensors[k].is_tied_head) out.push_back({tensors[k].global_id, sq[k]});
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

// Device state where the stage's memory is CUDA device memory (a stream) and the optimizer
// has a device twin; host state otherwise (the CPU backend, emulated device memory included:
// its memory is host memory, so the host kernels step it in place).
std::unique_ptr<OptimizerState> make_optimizer_state(const OptimizerSection& o, const StageModel& model) {
  const std::unique_ptr<Optimizer> opt = optimizer_for(o);
  const bool device = model.stream() != nullptr && opt->has_device_state();
  return opt->make_state(optim_layout(model), model.num_params(), device ? MemorySpace::kDevice : MemorySpace::kHost);
}

size_t optimizer_state_floats(const OptimizerSection& o, const StageModel& model) {
  return optimizer_for(o)->state_floats(optim_layout(model), model.num_params());
}

namespace {

// A host optimizer state of a stage in device memory (an optimizer without a device twin
// on CUDA): params and grads to the host, the host step, params back; counted transfers.
void step_through_host(StageModel& m, const Optimizer& opt, OptimizerState& state, const StepArgs& a) {
  std::vector<float> params(m.num_params()), grads(m.num_params());
  m.params_to_host(params.data());
  m.download(grads.data(), m.grads(), grads.size());
  opt.step(state, StageBuffers{params.data(), grads.data(), params.size(), MemorySpace::kHost, nullptr}, a);
  m.params_from_host(params.data());
}

}  // namespace

// The optimizer steps the stage's backend buffers in place (stage_model.h, memory contract):
// a kDevice state on the backend's stream, a kHost state where the memory is host memory
// (stream() null: the CPU backend, emulated device memory included).
void apply_stage_update(LocalStage& ls, const OptimizerSection& o, double lr, float grad_scale) {
  PT_CHECK_MSG(ls.optimizer_state != nullptr, "stage " + std::to_string(ls.stage) + " has no optimizer state to step");
  StageModel& m = *ls.model;
  const std::unique_ptr<Optimizer> opt = optimizer_for(o);
  const StepArgs args{lr, grad_scale, ls.version + 1};
  const MemorySpace space = ls.optimizer_state->space();
  if (space == MemorySpace::kDevice || m.stream() == nullptr) {
    opt->step(*ls.optimizer_state, StageBuffers{m.params(), m.grads(), m.num_params(), space, m.stream()}, args);
    m.params_written();
  } else {
    step_through_host(m, *opt, *ls.optimizer_state, args);
  }
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
