#include "optim/nadamw.h"

#include <cmath>

#include "common/check.h"
#include "optim/adamw.h"
#include "optim/adamw_state.h"
#include "optim/optimizer_checks.h"

namespace pt {

NAdamWCoefficients nadamw_coefficients(const NAdamWParams& np) {
  const AdamWParams& p = np.adam;
  auto mu = [&](int64_t k) { return double(p.beta1) * (1.0 - 0.5 * std::pow(0.96, double(k) * np.momentum_decay)); };
  double pi = 1.0;
  for (int64_t k = 1; k <= p.t; ++k) pi *= mu(k);
  const double mu_t = mu(p.t), mu_next = mu(p.t + 1);
  NAdamWCoefficients c;
  c.grad = float((1.0 - mu_t) / (1.0 - pi));
  c.momentum = float(mu_next / (1.0 - pi * mu_next));
  c.bc2 = 1.0f - std::pow(p.beta2, float(p.t));
  return c;
}

void nadamw_update(float* params, const float* grads, float* m, float* v, size_t n, const NAdamWParams& np) {
  const NAdamWCoefficients c = nadamw_coefficients(np);
  const AdamWParams& p = np.adam;
  for (size_t i = 0; i < n; ++i) {
    const float g = grads[i] * p.grad_scale;
    const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float d = std::sqrt(vi / c.bc2) + p.eps;
    params[i] -= p.lr * (p.weight_decay * params[i] + c.grad * (g / d) + c.momentum * (mi / d));
  }
}

namespace {

class NAdamW final : public TwoMomentOptimizer {
 public:
  explicit NAdamW(const OptimizerOptions& o) : TwoMomentOptimizer("nadamw", o) {}
  // Host state only: NAdamW has no CUDA twin yet.
  std::unique_ptr<OptimizerState> make_state(const std::vector<OptimTensor>& layout, size_t n,
                                             MemorySpace space) const override;

  void step(OptimizerState& state, const StageBuffers& b, const StepArgs& a) const override {
    AdamWState& s = host_state_for<AdamWState>(state, b, kind());
    for (const auto& t : s.layout()) {
      const NAdamWParams np{adamw_params_for(t, o_, a), o_.momentum_decay};
      nadamw_update(b.params + t.offset, b.grads + t.offset, s.host_m() + t.offset, s.host_v() + t.offset, t.numel, np);
    }
  }
};

std::unique_ptr<OptimizerState> NAdamW::make_state(const std::vector<OptimTensor>& layout, size_t n,
                                                  MemorySpace space) const {
  PT_CHECK_MSG(space == MemorySpace::kHost, "nadamw: there is no device-resident state (no CUDA twin yet)");
  check_layout_fits(layout, n, kind());
  return std::make_unique<AdamWState>(layout, n);
}

}  // namespace

std::unique_ptr<Optimizer> make_nadamw(const OptimizerOptions& options) { return std::make_unique<NAdamW>(options); }

}  // namespace pt
