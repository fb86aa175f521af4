// LayerNorm input gradient for an element type T (float or bf16), shared by the fp32
// op (layernorm.cc) and its bf16 twin (layernorm_bf16.cc); included by those only.
// dinp, dout, inp, weight have type T; mean, rstd are fp32. Per row, in fp32:
// dnorm = w·dout, norm = (x - m)·s, dinp = (dnorm - mean(dnorm) - norm·mean(dnorm·norm))·s,
// with both means serial sums in ascending column order; dinp is written (=), rounded
// once for bf16.
#pragma once

#include <cstddef>

#include "model/cpu/bf16.h"

namespace pt::cpu::detail {

template <typename T>
void layernorm_backward_input_rows(T* dinp, const T* dout, const T* inp, const T* weight, const float* mean,
                                   const float* rstd, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const T* x = inp + size_t(n) * C;
    const T* d = dout + size_t(n) * C;
    T* dx = dinp + size_t(n) * C;
    const float m = mean[n], s = rstd[n];
    float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
    for (int c = 0; c < C; ++c) {
      const float norm = (to_float(x[c]) - m) * s;
      const float dnorm = to_float(weight[c]) * to_float(d[c]);
      dnorm_sum += dnorm;
      dnorm_norm_sum += dnorm * norm;
    }
    const float dnorm_mean = dnorm_sum / float(C);
    const float dnorm_norm_mean = dnorm_norm_sum / float(C);
    for (int c = 0; c < C; ++c) {
      const float norm = (to_float(x[c]) - m) * s;
      const float dnorm = to_float(weight[c]) * to_float(d[c]);
      store_float(dx + c, (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
    }
  }
}

}  // namespace pt::cpu::detail
