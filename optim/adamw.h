// AdamW with decoupled weight decay (Loshchilov & Hutter), fp32 master weights and
// fp32 moments. adamw_update updates one contiguous tensor (the CPU twin of
// cuda::adamw_update, optim/cuda/adamw.h); the update of every element depends
// only on that element, so any partition of the parameters across ranks gives
// bitwise-identical results.
//   m = b1·m + (1−b1)·g ;  v = b2·v + (1−b2)·g²
//   p -= lr · ( m̂ / (sqrt(v̂) + eps) + wd·p )     with m̂ = m/(1−b1^t), v̂ = v/(1−b2^t)
// make_adamw is the Optimizer (optim/optimizer.h) registered as "adamw": per stage
// it holds the state tensors kAdamM and kAdamV (n floats each, the params' layout)
// and applies adamw_update to every tensor of the layout, with weight decay where
// the tensor's flag says so (for "wte" also only when decay_embeddings is set).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "optim/optimizer.h"

namespace pt {

struct AdamWParams {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // already zero for tensors excluded from decay
  int64_t t = 1;              // 1-based update count of this tensor (bias correction)
  float grad_scale = 1.0f;    // multiplies g first (gradient clipping)
};

// params, grads, m, v: (n,)
void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& p);

// The state tensor names of AdamW (checkpoints store them under these names).
constexpr const char* kAdamM = "adam_m";  // first moment
constexpr const char* kAdamV = "adam_v";  // second moment

// The hyper-parameters of tensor t in one update: options and step cast to float,
// weight decay only where t's flag says so (for "wte" also only with decay_embeddings).
// Shared by the host and device paths, so both apply the same rule.
AdamWParams adamw_params_for(const OptimTensor& t, const OptimizerOptions& o, const StepArgs& a);

// The registry's "adamw". kHost state steps host buffers (adamw_update); kDevice state
// (CUDA builds, optim/cuda/adamw_state.h) steps device buffers (cuda::adamw_update_multi).
std::unique_ptr<Optimizer> make_adamw(const OptimizerOptions& options);

}  // namespace pt
