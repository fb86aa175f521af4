// bf16 LayerNorm, CPU twin; see layernorm_bf16.h.
#include "model/cpu/layernorm_bf16.h"

#include <cmath>
#include <cstddef>

#include "model/cpu/layernorm.h"
#include "model/cpu/layernorm_input_grad.h"

namespace pt::cpu {

void layernorm_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* inp, const bf16* weight,
                                   const float* mean, const float* rstd, int N, int C) {
  detail::layernorm_backward_input_rows(dinp, dout, inp, weight, mean, rstd, N, C);
}

void layernorm_forward_bf16(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                            const bf16* bias, int N, int C) {
  for (int n = 0; n < N; ++n) {
    const bf16* x = inp + size_t(n) * C;
    bf16* o = out + size_t(n) * C;
    float sum = 0.0f;
    for (int c = 0; c < C; ++c) sum += bf16_to_float(x[c]);
    const float m = sum / float(C);
    float var = 0.0f;
    for (int c = 0; c < C; ++c) {
      const float d = bf16_to_float(x[c]) - m;
      var += d * d;
    }
    const float v = var / float(C);
    const float s = 1.0f / std::sqrt(v + kLayerNormEps);
    for (int c = 0; c < C; ++c) {
      o[c] = float_to_bf16((bf16_to_float(x[c]) - m) * s * bf16_to_float(weight[c]) + bf16_to_float(bias[c]));
    }
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward_weight_bf16(float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                                    const float* mean, const float* rstd, int N, int C) {
  // Per column: one serial fp32 sum over rows, then a single += (the kernel, too,
  // adds its finished column sum to dweight/dbias once).
  for (int c = 0; c < C; ++c) {
    float w = 0.0f, b = 0.0f;
    for (int n = 0; n < N; ++n) {
      const float d = bf16_to_float(dout[size_t(n) * C + c]);
      w += d * ((bf16_to_float(inp[size_t(n) * C + c]) - mean[n]) * rstd[n]);
      b += d;
    }
    dweight[c] += w;
    dbias[c] += b;
  }
}

}  // namespace pt::cpu
