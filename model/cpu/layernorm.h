// LayerNorm over the last dimension (CPU), eps = kLayerNormEps as in GPT-2.
// Forward saves per-row mean and 1/std for the backward. The backward is split:
// the input gradient is written (=), the weight/bias gradients accumulate (+=)
// with a serial loop over rows, so the result does not depend on threading.
#pragma once

namespace pt::cpu {

constexpr float kLayerNormEps = 1e-5f;

// out (N, C) = (inp - mean) * rstd * weight + bias.  inp (N, C), weight/bias (C),
// mean/rstd (N) are written for the backward.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);

// dinp (N, C) = d(out)/d(inp)ᵀ · dout.  dout/inp (N, C), weight (C), mean/rstd (N).
void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C);

// dweight (C) += sum_n dout * norm, dbias (C) += sum_n dout.  dout/inp (N, C), mean/rstd (N).
void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* mean, const float* rstd, int N, int C);

}  // namespace pt::cpu
