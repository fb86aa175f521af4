// Softmax + cross-entropy (CPU); see crossentropy.h. The loss is computed from
// the log-sum-exp (not log(prob)) so it stays finite when a probability
// underflows in fp32. The exponentials use the vectorizable exp of vec_math.h
// (libm's scalar expf dominated this op) and fixed-order sums.
#include "model/cpu/crossentropy.h"

#include <cmath>
#include <cstddef>
#include <vector>

#include "common/check.h"
#include "model/cpu/vec_math.h"

namespace pt::cpu {

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V) {
  std::vector<float> e(size_t(V > 0 ? V : 0));  // exp(x - max) of one row (the logits stay untouched)
  for (size_t n = 0; n < size_t(N > 0 ? N : 0); ++n) {
    const float* x = logits + n * V;
    const int32_t target = targets[n];
    PT_CHECK_MSG(target >= 0 && target < V, "target token id out of range [0, V)");
    const float mx = row_max(x, V);
    const float sum = exp_shift_sum(e.data(), x, V, mx);
    losses[n] = std::log(sum) - (x[target] - mx);
  }
}

void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V) {
  for (size_t n = 0; n < size_t(N > 0 ? N : 0); ++n) {
    const float* x = logits + n * V;
    float* d = dlogits + n * V;
    const int32_t target = targets[n];
    PT_CHECK_MSG(target >= 0 && target < V, "target token id out of range [0, V)");
    const float mx = row_max(x, V);  // before d (which may alias x) is written
    const float inv = 1.0f / exp_shift_sum(d, x, V, mx);
    for (int v = 0; v < V; ++v) d[v] *= inv;
    for (int v = 0; v < V; ++v) d[v] *= scale;
    d[target] -= scale;
  }
}

}  // namespace pt::cpu
