#include "app/optimizer_step.h"

#include "optim/adamw.h"
#include "optim/grad_norm.h"

#include <algorithm>
#include <cmath>

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

// The optimizer runs on the host on every backend: grads() are brought to the host
// and the new params() sent back (stage_model.h, host/device contract). A
// device-side AdamW (model/cuda/adamw.h) that skips both transfers is a later
// optimisation.
void apply_stage_update(LocalStage& ls, const OptimizerSection& o, double lr, float grad_scale) {
  ls.model->sync_grads_to_host();
  for (const auto& t : ls.model->tensors()) {
    AdamWParams p;
    p.lr = float(lr);
    p.beta1 = float(o.beta1);
    p.beta2 = float(o.beta2);
    p.eps = float(o.eps);
    const bool decay = t.weight_decay && (t.name != "wte" || o.decay_embeddings);
    p.weight_decay = decay ? float(o.weight_decay) : 0.0f;
    p.t = ls.version + 1;
    p.grad_scale = grad_scale;
    adamw_update(ls.model->params() + t.offset, ls.model->grads() + t.offset, ls.adam_m.data() + t.offset,
                 ls.adam_v.data() + t.offset, t.numel, p);
  }
  ls.model->sync_params_to_device();
  ++ls.version;
}

LrSchedule lr_schedule_for(const Config& c) {
  LrSchedule s;
  s.kind = c.optimizer.lr_schedule;
  s.lr = c.optimizer.lr;
  s.min_lr_ratio = c.optimizer.min_lr_ratio;
  s.warmup_steps = c.optimizer.warmup_steps;
  s.total_steps = c.training.steps;
  return s;
}

double apply_stage_update_self_clipped(LocalStage& ls, const Config& c, const LrSchedule& lr) {
  std::vector<std::pair<int, double>> sq = stage_grad_sumsq(ls);
  std::sort(sq.begin(), sq.end());
  double total = 0.0;
  for (const auto& e : sq) total += e.second;
  apply_stage_update(ls, c.optimizer, learning_rate(lr, ls.version), clip_scale(std::sqrt(total), c.optimizer.grad_clip));
  return total;
}

size_t optimizer_state_floats(const LocalStage& ls) { return ls.adam_m.size() + ls.adam_v.size(); }

void init_optimizer_state(LocalStage& ls, const OptimizerSection&) {
  ls.adam_m.assign(ls.model->num_params(), 0.0f);
  ls.adam_v.assign(ls.model->num_params(), 0.0f);
}

void release_optimizer_state(LocalStage& ls) {
  std::vector<float>().swap(ls.adam_m);
  std::vector<float>().swap(ls.adam_v);
}

}  // namespace pt
