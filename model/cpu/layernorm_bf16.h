// CPU twin of the bf16 LayerNorm (model/cuda/layernorm_bf16.h): same names, argument
// order and layouts, eps = kLayerNormEps. Activations (inp, out, dout, dinp) are
// bf16; the LayerNorm weight and bias are the bf16 copies of the fp32 master weights
// (refreshed by convert_fp32_to_bf16 after each optimizer step), so the forward reads
// only bf16 tensors; mean/rstd and the weight/bias gradients are fp32. Everything is
// computed in fp32 from the widened bf16 values with the formulas of the fp32 op
// (model/cpu/layernorm.h), and only the bf16 outputs are rounded:
//   forward          m = Σx/C, v = Σ(x-m)²/C (two-pass), s = 1/sqrt(v + eps),
//                    out = bf16((x - m)·s·w + b)
//   backward_input   dnorm = w·dout, dinp = bf16((dnorm - mean(dnorm)
//                    - norm·mean(dnorm·norm))·s), norm = (x - m)·s
//   backward_weight  dweight += Σ_n dout·norm, dbias += Σ_n dout  (fp32, +=)
// Sums run serially (ascending index), so results do not depend on threading; the
// kernels sum in another fixed order (fp32 summation-order differences only).
// As with the fp32 pair, the kernel's backward_weight takes a scratch the twin does
// not need. Not yet used by training.
#pragma once

#include "model/cpu/bf16.h"

namespace pt::cpu {

// Types: inp, out, dout, dinp (N, C) and weight, bias (C) bf16; mean, rstd (N) and
// dweight, dbias (C) fp32. out and dinp are written (=), dweight and dbias accumulated
// (+=). The input gradient comes first: it is the fp32 op's code (one template).
void layernorm_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* inp, const bf16* weight,
                                   const float* mean, const float* rstd, int N, int C);
void layernorm_forward_bf16(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                            const bf16* bias, int N, int C);
void layernorm_backward_weight_bf16(float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                                    const float* mean, const float* rstd, int N, int C);

}  // namespace pt::cpu
