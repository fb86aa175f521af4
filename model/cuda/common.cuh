// Device helpers shared by the model/cuda kernels (included by .cu files only):
// grid sizing, fp32/bf16 element access, and warp reductions whose combine order
// is a fixed tree, so every reduction gives the same bits on every run.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda::detail {

constexpr int kWarpSize = 32;

inline unsigned int ceil_div(size_t a, size_t b) { return static_cast<unsigned int>((a + b - 1) / b); }

// Butterfly reduction: every lane ends with the same value, combined in a fixed
// order (xor 16, 8, 4, 2, 1), independent of timing.
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Element loads widened to fp32 and fp32 results stored in the element type (bf16
// rounded to nearest even), so one kernel template serves fp32 and bf16 tensors.
__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline void store_float(float* p, float v) { *p = v; }
__device__ inline void store_float(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// out (N, OC) row n = bias (OC): the bias a GEMM with beta = 1 then accumulates onto.
// One thread per element (grid ceil_div(N * OC, blockDim)).
static __global__ void fill_rows_kernel(float* out, const float* bias, int N, int OC) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < size_t(N) * OC) out[i] = bias[i % OC];
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace pt::cuda::detail
