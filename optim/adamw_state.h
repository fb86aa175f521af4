// AdamWState: AdamW's state of one stage (optim/adamw.h): the moments m and v, n
// floats each in the stage's params layout, named kAdamM and kAdamV and sliced per
// parameter tensor for checkpoints. Here they live in host memory (MemorySpace::kHost);
// the device state (optim/cuda/adamw_state.h) derives from this class and keeps
// these vectors as its host mirror.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "optim/optimizer.h"

namespace pt {

// An optimizer whose state is AdamW's two moments per parameter (adam_m, adam_v): AdamW, NAdamW.
class TwoMomentOptimizer : public Optimizer {
 public:
  TwoMomentOptimizer(const char* kind, const OptimizerOptions& o) : kind_(kind), o_(o) {}
  const char* kind() const override { return kind_; }
  std::vector<std::string> state_names() const override { return {kAdamM, kAdamV}; }
  size_t state_floats(const std::vector<OptimTensor>&, size_t n) const override { return 2 * n; }

 protected:
  const char* kind_;
  OptimizerOptions o_;
};

class AdamWState : public OptimizerState {
 public:
  AdamWState(std::vector<OptimTensor> layout, size_t n);
  MemorySpace space() const override { return MemorySpace::kHost; }
  std::vector<StateTensor> tensors() override;
  std::vector<StateTensor> tensor_state(size_t k) override;
  size_t total_floats() const override { return m_.size() + v_.size(); }

  const std::vector<OptimTensor>& layout() const { return layout_; }
  size_t n() const { return m_.size(); }
  float* host_m() { return m_.data(); }  // (n,)
  float* host_v() { return v_.data(); }  // (n,)

 private:
  std::vector<OptimTensor> layout_;
  std::vector<float> m_, v_;
};

}  // namespace pt
