#include "optim/adamw.h"

#include <cmath>
#include <utility>
#include <vector>

#include "common/check.h"
#include "optim/adamw_state.h"
#include "optim/cuda/adamw_state.h"
#include "optim/optimizer_checks.h"

namespace pt {

void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& p) {
  const float bc1 = 1.0f - std::pow(p.beta1, float(p.t));
  const float bc2 = 1.0f - std::pow(p.beta2, float(p.t));
  for (size_t i = 0; i < n; ++i) {
    float g = grads[i] * p.grad_scale;
    float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1;
    float vhat = vi / bc2;
    params[i] -= p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weight_decay * params[i]);
  }
}

AdamWState::AdamWState(std::vector<OptimTensor> layout, size_t n)
    : layout_(std::move(layout)), m_(n, 0.0f), v_(n, 0.0f) {}

std::vector<StateTensor> AdamWState::tensors() {
  return {{kAdamM, m_.data(), m_.size()}, {kAdamV, v_.data(), v_.size()}};
}

std::vector<StateTensor> AdamWState::tensor_state(size_t k) {
  PT_CHECK(k < layout_.size());
  const OptimTensor& t = layout_[k];
  return {{kAdamM, m_.data() + t.offset, t.numel}, {kAdamV, v_.data() + t.offset, t.numel}};
}

AdamWParams adamw_params_for(const OptimTensor& t, const OptimizerOptions& o, const StepArgs& a) {
  AdamWParams p;
  p.lr = float(a.lr);
  p.beta1 = float(o.beta1);
  p.beta2 = float(o.beta2);
  p.eps = float(o.eps);
  const bool decay = t.weight_decay && (t.name != "wte" || o.decay_embeddings);
  p.weight_decay = decay ? float(o.weight_decay) : 0.0f;
  p.t = a.t;
  p.grad_scale = a.grad_scale;
  return p;
}

namespace {

class AdamW final : public TwoMomentOptimizer {
 public:
  explicit AdamW(const OptimizerOptions& o) : TwoMomentOptimizer("adamw", o) {}
  bool has_device_state() const override { return true; }
  std::unique_ptr<OptimizerState> make_state(const std::vector<OptimTensor>& layout, size_t n,
                                             MemorySpace space) const override {
    check_layout_fits(layout, n, kind());
    if (space == MemorySpace::kDevice) return make_adamw_device_state(layout, n);
    return std::make_unique<AdamWState>(layout, n);
  }

  void step(OptimizerState& state, const StageBuffers& b, const StepArgs& a) const override {
    if (b.space == MemorySpace::kDevice) return adamw_step_device(state, b, o_, a);
    AdamWState& s = host_state_for<AdamWState>(state, b, kind());
    for (const auto& t : s.layout())
      adamw_update(b.params + t.offset, b.grads + t.offset, s.host_m() + t.offset, s.host_v() + t.offset, t.numel,
                   adamw_params_for(t, o_, a));
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const OptimizerOptions& options) { return std::make_unique<AdamW>(options); }

}  // namespace pt
