#include "optim/adamw.h"

#include <cmath>

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

}  // namespace pt
