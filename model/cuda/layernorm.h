// LayerNorm over the last dimension on the GPU (fp32); twin of model/cpu/layernorm.h,
// eps = pt::cpu::kLayerNormEps. Forward and the input gradient: one warp per row,
// two-pass mean/variance as in the twin. Weight/bias gradients accumulate (+=) with
// a deterministic two-pass column reduction: partial sums over fixed chunks of
// kLayerNormRowsPerChunk rows, then the partials in chunk order. Every reduction has
// a fixed order, so results are bitwise reproducible run to run (not bitwise equal
// to the CPU twin, whose sums run serially).
// Deviation from the CPU twin: layernorm_backward_weight takes a float scratch of
// layernorm_backward_weight_scratch_floats(N, C) elements for the partial sums.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

constexpr int kLayerNormRowsPerChunk = 64;

// out (N, C) = (inp - mean) * rstd * weight + bias.  inp (N, C), weight/bias (C),
// mean/rstd (N) are written for the backward.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, cudaStream_t stream);

// dinp (N, C) = d(out)/d(inp)ᵀ · dout.  dout/inp (N, C), weight (C), mean/rstd (N).
void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C, cudaStream_t stream);

// 2 · ceil(N / kLayerNormRowsPerChunk) · C.
size_t layernorm_backward_weight_scratch_floats(int N, int C);

// dweight (C) += sum_n dout * norm, dbias (C) += sum_n dout.  dout/inp (N, C), mean/rstd (N),
// scratch (layernorm_backward_weight_scratch_floats(N, C)).
void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* mean, const float* rstd, int N, int C, float* scratch,
                               cudaStream_t stream);

// The same three on bf16 activations (real bf16 storage, model/bf16_storage_backend.h):
// inp, out, dout, dinp bf16, weight and bias fp32 (bf16-valued in the stage model),
// statistics, gradients and scratch fp32 as above. Loads widened, bf16 stores rounded
// once (RNE); the fp32 kernels' arithmetic and order (the same row chunks for the
// weight gradient), so the results are the fp32 forms' on the widened values, rounded.
void layernorm_forward_bf16act(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                               const float* weight, const float* bias, int N, int C, cudaStream_t stream);
void layernorm_backward_input_bf16act(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                      const float* weight, const float* mean, const float* rstd, int N, int C,
                                      cudaStream_t stream);
void layernorm_backward_weight_bf16act(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                       const __nv_bfloat16* inp, const float* mean, const float* rstd, int N, int C,
                                       float* scratch, cudaStream_t stream);

}  // namespace pt::cuda
