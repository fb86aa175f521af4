// fp32 <-> bf16 array conversions on the GPU; CPU twin model/cpu/convert_bf16.h.
// convert_fp32_to_bf16 rounds to nearest, ties to even (__float2bfloat16_rn): it
// refreshes the bf16 weight copies from the fp32 master weights after each optimizer
// step. convert_bf16_to_fp32 is exact. round_fp32_to_bf16 rounds fp32 values in place
// to bf16-representable ones (the stage model's bf16 precision, model/precision.h). Elementwise, one thread per element in a
// grid-stride loop: results do not depend on the launch shape. No alignment
// requirement beyond the element type's; out must not overlap inp.
// NaN stays NaN (payload bits may differ from the twin: compare with isnan); values
// beyond the largest finite bf16 round to ±inf.
// Status: compiled for sm_90, NOT yet run on a GPU (the task that wrote it had none;
// tests/model/cuda/bf16_ops_test.cc checks it against the twin bitwise on a GPU).
// Used by training: round_fp32_to_bf16 at the stage model's rounding points, the
// conversions by the CUDA backend's bf16 mode (cuda_backend.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

// out[i] = __float2bfloat16_rn(inp[i]), i < n.
void convert_fp32_to_bf16(__nv_bfloat16* out, const float* inp, size_t n, cudaStream_t stream);

// out[i] = __bfloat162float(inp[i]), i < n.
void convert_bf16_to_fp32(float* out, const __nv_bfloat16* inp, size_t n, cudaStream_t stream);

// p[i] = __bfloat162float(__float2bfloat16_rn(p[i])), i < n (in place).
void round_fp32_to_bf16(float* p, size_t n, cudaStream_t stream);

// b = __float2bfloat16_rn(inp[i]); rounded[i] = __bfloat162float(b), out[i] = b, i < n:
// round_fp32_to_bf16 of a copy and convert_fp32_to_bf16 of the result in one pass (the
// bf16 weight refresh: 10 bytes per weight instead of 26). inp may not overlap the outputs.
void round_fp32_to_bf16_copy(float* rounded, __nv_bfloat16* out, const float* inp, size_t n, cudaStream_t stream);

}  // namespace pt::cuda
