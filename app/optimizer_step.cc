#include "app/optimizer_step.h"

#include "optim/adamw.h"
#include "optim/grad_norm.h"

namespace pt {

std::vector<std::pair<int, double>> stage_grad_sumsq(const LocalStage& ls) {
  std::vector<std::pair<int, double>> out;
  for (const auto& t : ls.model->tensors()) {
    if (t.is_tied_head) continue;
    out.push_back({t.global_id, sum_of_squares(ls.model->grads() + t.offset, t.numel)});
  }
  return out;
}

void apply_stage_update(LocalStage& ls, const OptimizerSection& o, double lr, float grad_scale) {
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
  ++ls.version;
}

}  // namespace pt
