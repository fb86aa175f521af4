// Fused residual add + LayerNorm on the GPU; see residual_layernorm.h.
#include "model/cuda/residual_layernorm.h"

#include <cuda_bf16.h>

#include "model/cpu/layernorm.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/layernorm_kernels.cuh"

namespace pt::cuda {
namespace {

using detail::kLayerNormRowsPerBlock;
using detail::kLayerNormRowThreads;
using detail::kWarpSize;
using detail::warp_sum;

// The residual value of one column: the IEEE sum, rounded to bf16 as round_fp32_to_bf16 does.
template <typename T>
__device__ inline float residual_value(const T* a, const T* b, int c, bool round_bf16) {
  const float x = detail::to_float(a[c]) + detail::to_float(b[c]);
  return round_bf16 ? __bfloat162float(__float2bfloat16_rn(x)) : x;
}

// kCache > 0: C <= kCache * 32, the lane's columns stay in registers (fully unrolled,
// so the array is never spilled to local memory). kCache == 0: any C; the lane
// re-reads the res values it stored itself (visible to it without a fence).
// Both keep the LayerNorm kernel's order: per lane ascending c, then warp_sum.
// T: the activations' element type (res, ln, inp1, inp2); a bf16 res needs round_bf16,
// so that the value stored and re-read is the value the LayerNorm uses.
template <int kCache, typename T>
__global__ void __launch_bounds__(kLayerNormRowThreads)
    residual_layernorm_forward_kernel(T* res, T* ln, float* mean, float* rstd, const T* inp1, const T* inp2,
                                      const float* weight, const float* bias, int N, int C, bool round_bf16) {
  const int row = blockIdx.x * kLayerNormRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;  // whole warp leaves together
  const size_t off = size_t(row) * C;
  const T* a = inp1 + off;
  const T* b = inp2 + off;
  T* r = res + off;
  T* o = ln + off;
  float sum = 0.0f;
  if constexpr (kCache > 0) {
    float xs[kCache];
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      const int c = lane + k * kWarpSize;
      xs[k] = 0.0f;
      if (c < C) {
        xs[k] = residual_value(a, b, c, round_bf16);
        detail::store_float(r + c, xs[k]);
        sum += xs[k];
      }
    }
    const float m = warp_sum(sum) / float(C);
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      if (lane + k * kWarpSize < C) {
        const float d = xs[k] - m;
        var += d * d;
      }
    }
    const float v = warp_sum(var) / float(C);
    const float s = 1.0f / sqrtf(v + cpu::kLayerNormEps);
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      const int c = lane + k * kWarpSize;
      if (c < C) detail::store_float(o + c, (xs[k] - m) * s * weight[c] + bias[c]);
    }
    if (lane == 0) {
      mean[row] = m;
      rstd[row] = s;
    }
  } else {
    for (int c = lane; c < C; c += kWarpSize) {
      const float x = residual_value(a, b, c, round_bf16);
      detail::store_float(r + c, x);
      sum += x;
    }
    const float m = warp_sum(sum) / float(C);
    float var = 0.0f;
    for (int c = lane; c < C; c += kWarpSize) {
      const float d = detail::to_float(r[c]) - m;
      var += d * d;
    }
    const float v = warp_sum(var) / float(C);
    const float s = 1.0f / sqrtf(v + cpu::kLayerNormEps);
    for (int c = lane; c < C; c += kWarpSize) {
      detail::store_float(o + c, (detail::to_float(r[c]) - m) * s * weight[c] + bias[c]);
    }
    if (lane == 0) {
      mean[row] = m;
      rstd[row] = s;
    }
  }
}

template <int kCache, typename T>
void launch(T* res, T* ln, float* mean, float* rstd, const T* inp1, const T* inp2, const float* weight,
            const float* bias, int N, int C, bool round_bf16, cudaStream_t stream) {
  residual_layernorm_forward_kernel<kCache, T>
      <<<detail::ceil_div(N, kLayerNormRowsPerBlock), kLayerNormRowThreads, 0, stream>>>(
          res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_bf16);
  PT_CUDA_CHECK_LAUNCH();
}

// The register tier for C (see residual_layernorm_forward), for either element type.
template <typename T>
void dispatch(T* res, T* ln, float* mean, float* rstd, const T* inp1, const T* inp2, const float* weight,
              const float* bias, int N, int C, bool round_res_bf16, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  // Register tiers: GPT-2 small (768) fits 24 values per lane exactly; up to 2048
  // (GPT-2 XL's 1600) in 64; wider rows re-read res.
  if (C <= 8 * kWarpSize) {
    launch<8>(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16, stream);
  } else if (C <= 24 * kWarpSize) {
    launch<24>(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16, stream);
  } else if (C <= 64 * kWarpSize) {
    launch<64>(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16, stream);
  } else {
    launch<0>(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16, stream);
  }
}

}  // namespace

void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                const float* inp2, const float* weight, const float* bias, int N, int C,
                                bool round_res_bf16, cudaStream_t stream) {
  dispatch(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16, stream);
}

void residual_layernorm_forward_bf16act(__nv_bfloat16* res, __nv_bfloat16* ln, float* mean, float* rstd,
                                        const __nv_bfloat16* inp1, const __nv_bfloat16* inp2, const float* weight,
                                        const float* bias, int N, int C, cudaStream_t stream) {
  dispatch(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, /*round_res_bf16=*/true, stream);
}

void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd, int N, int C,
                                       bool round_bf16, cudaStream_t stream) {
  detail::layernorm_backward_input_residual(dinp, dres, dout, inp, weight, mean, rstd, N, C, round_bf16, stream);
}

void layernorm_backward_input_residual_bf16act(__nv_bfloat16* dinp, const __nv_bfloat16* dres,
                                               const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                               const float* weight, const float* mean, const float* rstd, int N,
                                               int C, cudaStream_t stream) {
  detail::layernorm_backward_input_residual(dinp, dres, dout, inp, weight, mean, rstd, N, C, /*round_bf16=*/true,
                                            stream);
}

}  // namespace pt::cuda
