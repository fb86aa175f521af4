// LayerNorm (CPU); see layernorm.h.
#include "model/cpu/layernorm.h"

#include <cmath>
#include <cstddef>

namespace pt::cpu {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    float* o = out + size_t(n) * C;
    float m = 0.0f;
    for (int c = 0; c < C; ++c) m += x[c];
    m /= float(C);
    // Two-pass variance: no cancellation when |mean| >> std.
    float v = 0.0f;
    for (int c = 0; c < C; ++c) {
      float d = x[c] - m;
      v += d * d;
    }
    v /= float(C);
    float s = 1.0f / std::sqrt(v + kLayerNormEps);
    for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const float* x = inp + size_t(n) * C;
    const float* d = dout + size_t(n) * C;
    float* dx = dinp + size_t(n) * C;
    const float m = mean[n], s = rstd[n];
    // Two reductions of the standard formula: mean(w*dout) and mean(w*dout*norm).
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int c = 0; c < C; ++c) {
      float norm = (x[c] - m) * s;
      float dnorm = weight[c] * d[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= float(C);
    dnorm_norm_mean /= float(C);
    for (int c = 0; c < C; ++c) {
      float norm = (x[c] - m) * s;
      float dnorm = weight[c] * d[c];
      dx[c] = (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }
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
