// Fused residual add + LayerNorm (CPU), the op a block uses where a residual sum
// feeds a LayerNorm directly (res1 -> ln2; res2 -> the next block's ln1 or lnf), and
// its backward counterpart: the LayerNorm input gradient added to the residual
// stream's gradient (layernorm_backward_input_residual).
// The arithmetic is exactly residual_forward, then (optionally) the bf16 rounding
// of the sum, then layernorm_forward, row by row: bitwise equal to the three
// unfused calls, so the stage model's CPU results do not change. The CUDA twin is
// model/cuda/residual_layernorm.h.
#pragma once

namespace pt::cpu {

// res (N, C) = inp1 + inp2 (res may alias inp1 or inp2), rounded to bf16 in place when
// round_res_bf16 (the stage model's bf16 storage of the residual stream); then
// ln (N, C), mean, rstd (N) = layernorm_forward(res, weight, bias) (model/cpu/layernorm.h).
// ln, mean, rstd must not overlap res or the inputs.
void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                const float* inp2, const float* weight, const float* bias, int N, int C,
                                bool round_res_bf16);

// dinp (N, C) = dres + g, g = layernorm_backward_input(dout, inp, weight, mean, rstd)
// (model/cpu/layernorm.h), rounded to bf16 first when round_bf16 (the stage model's bf16
// storage of g): bitwise layernorm_backward_input into a temporary, round_fp32_to_bf16
// of it, then residual_forward(dinp, dres, tmp). dinp is not rounded (the caller stores
// it). dinp must not overlap dres, dout or inp.
void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd, int N, int C,
                                       bool round_bf16);

}  // namespace pt::cpu
