// AdamW with decoupled weight decay (Loshchilov & Hutter), fp32 master weights and
// fp32 moments. One call updates one contiguous tensor; the update of every element
// depends only on that element, so any partition of the parameters across ranks
// gives bitwise-identical results.
//   m = b1·m + (1−b1)·g ;  v = b2·v + (1−b2)·g²
//   p -= lr · ( m̂ / (sqrt(v̂) + eps) + wd·p )     with m̂ = m/(1−b1^t), v̂ = v/(1−b2^t)
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace pt
