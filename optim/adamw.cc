#include "optim/adamw.h"

#include <cmath>
#include <utility>
#include <vector>

#include "common/check.h"

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

namespace {

// m, v: (n,) host, laid out as the stage's params.
class AdamWState final : public OptimizerState {
 public:
  AdamWState(std::vector<OptimTensor> layout, size_t n) : layout_(std::move(layout)), m_(n, 0.0f), v_(n, 0.0f) {}
  MemorySpace space() const override { return MemorySpace::kHost; }
  std::vector<StateTensor> tensors() override { return {{kAdamM, m_.data(), m_.size()}, {kAdamV, v_.data(), v_.size()}}; }
  std::vector<StateTensor> tensor_state(size_t k) override {
    PT_CHECK(k < layout_.size());
    const OptimTensor& t = layout_[k];
    return {{kAdamM, m_.data() + t.offset, t.numel}, {kAdamV, v_.data() + t.offset, t.numel}};
  }
  size_t total_floats() const override { return m_.size() + v_.size(); }

  const std::vector<OptimTensor>& layout() const { return layout_; }
  size_t n() const { return m_.size(); }
  float* m() { return m_.data(); }
  float* v() { return v_.data(); }

 private:
  std::vector<OptimTensor> layout_;
  std::vector<float> m_, v_;
};

class AdamW final : public Optimizer {
 public:
  explicit AdamW(const OptimizerOptions& o) : o_(o) {}
  const char* kind() const override { return "adamw"; }
  std::vector<std::string> state_names() const override { return {kAdamM, kAdamV}; }
  size_t state_floats(const std::vector<OptimTensor>&, size_t n) const override { return 2 * n; }

  std::unique_ptr<OptimizerState> make_state(const std::vector<OptimTensor>& layout, size_t n,
                                             MemorySpace space) const override {
    PT_CHECK_MSG(space == MemorySpace::kHost, "adamw: device-resident state is not implemented yet (the CUDA "
                                              "kernels are optim/cuda/adamw.h); step with host buffers");
    for (const auto& t : layout) PT_CHECK_MSG(t.offset + t.numel <= n, "adamw: tensor '" + t.name + "' exceeds the stage");
    return std::make_unique<AdamWState>(layout, n);
  }

  // Per tensor, exactly the hyper-parameters (float casts included) the trainer has always used.
  void step(OptimizerState& state, const StageBuffers& b, const StepArgs& a) const override {
    auto* s = dynamic_cast<AdamWState*>(&state);
    PT_CHECK_MSG(s != nullptr, "adamw: step given the state of another optimizer");
    PT_CHECK_MSG(b.space == MemorySpace::kHost, "adamw: device buffers need device state (not implemented yet)");
    PT_CHECK(b.n == s->n());
    for (const auto& t : s->layout()) {
      AdamWParams p;
      p.lr = float(a.lr);
      p.beta1 = float(o_.beta1);
      p.beta2 = float(o_.beta2);
      p.eps = float(o_.eps);
      const bool decay = t.weight_decay && (t.name != "wte" || o_.decay_embeddings);
      p.weight_decay = decay ? float(o_.weight_decay) : 0.0f;
      p.t = a.t;
      p.grad_scale = a.grad_scale;
      adamw_update(b.params + t.offset, b.grads + t.offset, s->m() + t.offset, s->v() + t.offset, t.numel, p);
    }
  }

 private:
  OptimizerOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const OptimizerOptions& options) { return std::make_unique<AdamW>(options); }

}  // namespace pt
