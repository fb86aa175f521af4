// Fused residual add + LayerNorm on the GPU (fp32 storage); twin of
// model/cpu/residual_layernorm.h. One warp per row: each lane adds its columns
// (c = lane, lane + 32, ...), optionally rounds them to bf16, stores them to res and
// keeps them in registers (C <= 2048; above that it re-reads its own stores), then
// computes mean, variance and the normalized row from those values. The per-lane
// sums, the warp butterfly and the output expression are those of the LayerNorm
// kernel (layernorm_kernels.cuh), so res, ln, mean and rstd are bitwise equal to
// cuda::residual_forward, cuda::round_fp32_to_bf16 (when round_res_bf16) and
// cuda::layernorm_forward in sequence. Against the CPU twin: res is bitwise equal
// (one IEEE add, the same rounding); mean/rstd/ln differ by summation order only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace pt::cuda {

// res (N, C) = inp1 + inp2 (res may alias inp1 or inp2), rounded to bf16 in place when
// round_res_bf16; ln (N, C), mean, rstd (N) = LayerNorm(res; weight, bias (C)).
// ln, mean, rstd must not overlap res or the inputs.
void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                const float* inp2, const float* weight, const float* bias, int N, int C,
                                bool round_res_bf16, cudaStream_t stream);

// The same on bf16 activations (real bf16 storage, model/bf16_storage_backend.h): res,
// ln, inp1, inp2 bf16 (res may alias an input), weight and bias fp32. res = bf16(inp1 +
// inp2), the value the LayerNorm normalizes (round_res_bf16 of the fp32 form); ln stored
// rounded once. Same arithmetic and order as the fp32 form on the widened values.
void residual_layernorm_forward_bf16act(__nv_bfloat16* res, __nv_bfloat16* ln, float* mean, float* rstd,
                                        const __nv_bfloat16* inp1, const __nv_bfloat16* inp2, const float* weight,
                                        const float* bias, int N, int C, cudaStream_t stream);

// dinp (N, C) = dres + g, g the LayerNorm input gradient (cuda::layernorm_backward_input),
// rounded to bf16 first when round_bf16; dinp not rounded, must not overlap an input.
// The LayerNorm backward kernel with the add in its store: bitwise cuda::layernorm_backward_input,
// cuda::round_fp32_to_bf16 (when round_bf16), cuda::residual_forward(dinp, dres, g).
// Against the CPU twin: g differs by summation order only, then the same rounding and add.
void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd, int N, int C,
                                       bool round_bf16, cudaStream_t stream);

// The same on bf16 activations (dinp, dres, dout, inp): dinp = bf16(dres + bf16(g)), bitwise
// layernorm_backward_input_bf16act then residual_forward_typed on bf16 (the unfused typed ops).
void layernorm_backward_input_residual_bf16act(__nv_bfloat16* dinp, const __nv_bfloat16* dres,
                                               const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                               const float* weight, const float* mean, const float* rstd, int N,
                                               int C, cudaStream_t stream);

}  // namespace pt::cuda
