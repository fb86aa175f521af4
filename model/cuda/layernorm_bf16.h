// LayerNorm over the last dimension on the GPU with bf16 activations; CPU twin
// model/cpu/layernorm_bf16.h (same names, argument order, layouts and rounding
// points), eps = pt::cpu::kLayerNormEps. Mirrors the fp32 kernels (layernorm.h):
//  * inp, out, dout, dinp (N, C) are bf16; mean, rstd (N) fp32.
//  * weight and bias (C) are the bf16 copies of the fp32 master weights (refreshed
//    from the masters by convert_fp32_to_bf16 after each optimizer step), so the
//    forward and the input gradient read only bf16 tensors; the weight/bias
//    gradients are fp32 and accumulate (+=) into the fp32 gradient buffers.
//  * All arithmetic in fp32 on widened bf16 values; only the bf16 outputs (out,
//    dinp) are rounded (__float2bfloat16_rn), once, at the end.
//  * Forward and input gradient: one warp per row, lane-strided sums combined by the
//    fixed butterfly of warp_sum (two-pass mean/variance). Weight/bias gradients:
//    partial column sums over fixed chunks of kLayerNormBf16RowsPerChunk rows into
//    the fp32 scratch, then the partials in chunk order and one += per column. No
//    atomics: every reduction has a fixed order, so results are bitwise reproducible
//    run to run (not bitwise equal to the twin, whose sums run serially).
//  * No alignment requirement beyond the element types' (scalar loads); any N, C.
// Deviation from the twin (as in the fp32 pair): layernorm_backward_weight_bf16
// takes a float scratch of layernorm_backward_weight_bf16_scratch_floats(N, C).
// Status: compiled for sm_90, NOT yet run on a GPU (none in the task that wrote it;
// tests/model/cuda/bf16_ops_test.cc compares with the twin on a GPU), and not yet
// used by training (the stage model still runs the fp32 kernels).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

constexpr int kLayerNormBf16RowsPerChunk = 64;

// out (N, C) = bf16((inp - mean) * rstd * weight + bias); mean/rstd (N) written for the backward.
void layernorm_forward_bf16(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                            const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C,
                            cudaStream_t stream);

// dinp (N, C) = bf16(d(out)/d(inp)ᵀ · dout) (written, =).
void layernorm_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                   const __nv_bfloat16* weight, const float* mean, const float* rstd, int N, int C,
                                   cudaStream_t stream);

// 2 · ceil(N / kLayerNormBf16RowsPerChunk) · C.
size_t layernorm_backward_weight_bf16_scratch_floats(int N, int C);

// dweight (C) += Σ_n dout * norm, dbias (C) += Σ_n dout (fp32). scratch as above.
void layernorm_backward_weight_bf16(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                    const __nv_bfloat16* inp, const float* mean, const float* rstd, int N, int C,
                                    float* scratch, cudaStream_t stream);

}  // namespace pt::cuda
