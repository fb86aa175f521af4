// Fused residual add + LayerNorm (CPU); see residual_layernorm.h. One row at a time,
// so the row just summed is still in cache when the LayerNorm reads it.
#include "model/cpu/residual_layernorm.h"

#include <cstddef>

#include "model/cpu/bf16.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/residual.h"

namespace pt::cpu {

void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                const float* inp2, const float* weight, const float* bias, int N, int C,
                                bool round_res_bf16) {
  for (int n = 0; n < N; ++n) {
    const size_t off = size_t(n) * C;
    float* r = res + off;
    add(r, inp1 + off, inp2 + off, size_t(C));
    if (round_res_bf16)
      for (int c = 0; c < C; ++c) r[c] = round_to_bf16(r[c]);
    // Row-local: layernorm_forward on one row is the same arithmetic as on all N.
    layernorm_forward(ln + off, mean + n, rstd + n, r, weight, bias, 1, C);
  }
}

void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd, int N, int C,
                                       bool round_bf16) {
  for (int n = 0; n < N; ++n) {
    const size_t off = size_t(n) * C;
    float* d = dinp + off;
    // Row-local: layernorm_backward_input on one row is the same arithmetic as on all N.
    layernorm_backward_input(d, dout + off, inp + off, weight, mean + n, rstd + n, 1, C);
    if (round_bf16)
      for (int c = 0; c < C; ++c) d[c] = round_to_bf16(d[c]);
    add(d, dres + off, d, size_t(C));
  }
}

}  // namespace pt::cpu
