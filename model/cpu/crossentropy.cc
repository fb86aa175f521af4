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

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, float* stats) {
  std::vector<float> e(size_t(V > 0 ? V : 0));  // exp(x - max) of one row (the logits stay untouched)
  for (size_t n = 0; n < size_t(N > 0 ? N : 0); ++n) {
    const float* x = logits + n * V;
    const int32_t target = targets[n];
    PT_CHECK_MSG(target >= 0 && target < V, "target token id out of range [0, V)");
    const float mx = row_max(x, V);
    const float sum = exp_shift_sum(e.data(), x, V, mx);
    losses[n] = std::log(sum) - (x[target] - mx);
    if (stats != nullptr) stats[2 * n] = mx, stats[2 * n + 1] = sum;
  }
}

// With stats the row's max and sum are the forward's (the CUDA kernel reads both and skips
// its statistics pass); the exponentials are written into d either way (the vectorized
// exp_shift_sum, whose sum on the same row is the saved one, bit for bit).
void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                           const float* stats) {
  for (size_t n = 0; n < size_t(N > 0 ? N : 0); ++n) {
    const float* x = logits + n * V;
    float* d = dlogits + n * V;
    const int32_t target = targets[n];
    PT_CHECK_MSG(target >= 0 && target < V, "target token id out of range [0, V)");
    const float mx = stats != nullptr ? stats[2 * n] : row_max(x, V);  // before d (which may alias x) is written
    const float sum = exp_shift_sum(d, x, V, mx);
    const float inv = 1.0f / (stats != nullptr ? stats[2 * n + 1] : sum);
    for (int v = 0; v < V; ++v) d[v] *= inv;
    for (int v = 0; v < V; ++v) d[v] *= scale;
    d[target] -= scale;
  }
}

}  // namespace pt::cpu
