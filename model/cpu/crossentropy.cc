// Fused softmax + cross-entropy (CPU); see crossentropy.h. The loss is computed
// from the log-sum-exp (not log(prob)) so it stays finite when a probability
// underflows in fp32. The exponentials use the vectorizable exp of vec_math.h
// (libm's scalar expf dominated this op) and fixed-order sums.
#include "model/cpu/crossentropy.h"

#include <cmath>
#include <cstddef>

#include "common/check.h"
#include "model/cpu/vec_math.h"

namespace pt::cpu {

void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int B, int T,
                          int V) {
  const size_t N = size_t(B) * T;
  for (size_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float* p = probs + n * V;
    const int32_t target = targets[n];
    PT_CHECK_MSG(target >= 0 && target < V, "target token id out of range [0, V)");
    const float mx = row_max(x, V);
    const float x_target = x[target];  // read before an in-place overwrite
    if (p != x)
      for (int v = 0; v < V; ++v) p[v] = x[v];
    const float sum = exp_shift_sum(p, V, mx);
    const float inv = 1.0f / sum;
    for (int v = 0; v < V; ++v) p[v] *= inv;
    losses[n] = std::log(sum) - (x_target - mx);
  }
}

void crossentropy_softmax_backward(float* dlogits, const float* probs, const int32_t* targets, float scale, int B,
                                   int T, int V) {
  const size_t N = size_t(B) * T;
  for (size_t n = 0; n < N; ++n) {
    const float* p = probs + n * V;
    float* d = dlogits + n * V;
    for (int v = 0; v < V; ++v) d[v] = p[v] * scale;
    d[targets[n]] -= scale;
  }
}

}  // namespace pt::cpu
