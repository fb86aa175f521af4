// Bias gradient of the cuBLASLt GEMMs (matmul.cu, matmul_bf16.cu; .cu files only):
// dbias (OC) += Σ_n dout[n, o] in fp32 for a row-major dout (N, OC) of element type
// T (float or __nv_bfloat16, widened to fp32 on load). The cuBLASLt BGRAD epilogues
// write rather than accumulate, so they are not used.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda::detail {

constexpr int kBiasGradColTile = 32;
constexpr int kBiasGradRowGroups = 32;

// Block (32, 32) per 32 columns: thread (x, y) sums rows y, y+32, ... of column x in
// order; the 32 row-group sums are combined by a fixed tree, then one += per column.
// Deterministic, and no scratch memory.
template <typename T>
__global__ void __launch_bounds__(kBiasGradColTile* kBiasGradRowGroups)
    bias_grad_kernel(float* dbias, const T* dout, int N, int OC) {
  __shared__ float part[kBiasGradRowGroups][kBiasGradColTile + 1];
  const int o = blockIdx.x * kBiasGradColTile + threadIdx.x;
  float s = 0.0f;
  if (o < OC) {
    for (int n = threadIdx.y; n < N; n += kBiasGradRowGroups) s += to_float(dout[size_t(n) * OC + o]);
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = kBiasGradRowGroups / 2; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) part[threadIdx.y][threadIdx.x] += part[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && o < OC) dbias[o] += part[0][threadIdx.x];
}

template <typename T>
void bias_grad(float* dbias, const T* dout, int N, int OC, cudaStream_t stream) {
  bias_grad_kernel<T><<<ceil_div(OC, kBiasGradColTile), dim3(kBiasGradColTile, kBiasGradRowGroups), 0, stream>>>(
      dbias, dout, N, OC);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda::detail
