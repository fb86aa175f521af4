// LayerNorm (CPU); see layernorm.h. The forward's per-row mean and variance keep
// 8 partial sums in a fixed order (the compiler vectorizes them; one serial sum
// is a chain of dependent adds), so results still do not depend on threads or
// ISA. The backward's paired reductions measured no faster that way and stay serial.
#include "model/cpu/layernorm.h"

#include <cmath>
#include <cstddef>

#include "model/cpu/layernorm_input_grad.h"

namespace pt::cpu {
namespace {
// ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)): the fixed combination order.
inline float combine8(const float* s) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }
}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    float* o = out + size_t(n) * C;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c0 = 0;
    for (; c0 + 8 <= C; c0 += 8)
      for (int j = 0; j < 8; ++j) acc[j] += x[c0 + j];
    for (int c = c0; c < C; ++c) acc[0] += x[c];
    const float m = combine8(acc) / float(C);
    // Two-pass variance: no cancellation when |mean| >> std.
    for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
    for (c0 = 0; c0 + 8 <= C; c0 += 8)
      for (int j = 0; j < 8; ++j) {
        const float d = x[c0 + j] - m;
        acc[j] += d * d;
      }
    for (int c = c0; c < C; ++c) {
      const float d = x[c] - m;
      acc[0] += d * d;
    }
    const float v = combine8(acc) / float(C);
    float s = 1.0f / std::sqrt(v + kLayerNormEps);
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C) {
  detail::layernorm_backward_input_rows(dinp, dout, inp, weight, mean, rstd, N, C);
}

void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* mean, const float* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    const float* d = dout + size_t(n) * C;
    const float m = mean[n], s = rstd[n];
    for (int c = 0; c < C; ++c) {
      dweight[c] += d[c] * ((x[c] - m) * s);
      dbias[c] += d[c];
    }
  }
}

}  // namespace pt::cpu
