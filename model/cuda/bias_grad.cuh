// Bias gradient of the cuBLASLt GEMMs (matmul.cu, matmul_bf16.cu; .cu files only):
// dbias (OC) += Σ_n dout[n, o] in fp32 for a row-major dout (N, OC) of element type
// T (float or __nv_bfloat16, widened to fp32 on load). The cuBLASLt BGRAD epilogues
// write rather than accumulate, so they are not used.
//
// Two passes, deterministic (fixed orders, no atomics):
//  1. grid (ceil(OC / 32), G), block (32, 8): block (j, g) sums the rows of chunk g
//     (G chunks of ceil(N / G) rows) of columns [32 j, 32 j + 32); thread (x, y) adds
//     rows y, y + 8, ... of its chunk in order, the 8 row groups are combined by a fixed
//     tree, and the chunk's sum is written (=) to partial[g · OC + o];
//  2. one thread per column: dbias[o] += Σ_g partial[g · OC + o], g in order.
// G is chosen for ~kBiasGradTargetBlocks blocks in pass 1 (a GEMM's OC of 768 gives only
// 24 column tiles: one block per tile, as before, kept 24 of an H100's 132 SMs busy
// with 1024-row serial loops), at least kBiasGradMinRows rows per chunk, and G · OC
// floats within the scratch (the stream's cuBLASLt workspace, ordered with the GEMMs
// by the stream).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda::detail {

constexpr int kBiasGradColTile = 32;
constexpr int kBiasGradRowGroups = 8;
constexpr int kBiasGradMinRows = 64;
constexpr int kBiasGradTargetBlocks = 1024;
constexpr int kBiasGradSumThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kBiasGradColTile* kBiasGradRowGroups)
    bias_grad_partial_kernel(float* partial, const T* dout, int N, int OC, int chunk_rows) {
  __shared__ float part[kBiasGradRowGroups][kBiasGradColTile + 1];
  const int o = blockIdx.x * kBiasGradColTile + threadIdx.x;
  const int begin = blockIdx.y * chunk_rows, end = min(N, begin + chunk_rows);
  float s = 0.0f;
  if (o < OC) {
    for (int n = begin + threadIdx.y; n < end; n += kBiasGradRowGroups) s += to_float(dout[size_t(n) * OC + o]);
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = kBiasGradRowGroups / 2; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) part[threadIdx.y][threadIdx.x] += part[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && o < OC) partial[size_t(blockIdx.y) * OC + o] = part[0][threadIdx.x];
}

static __global__ void __launch_bounds__(kBiasGradSumThreads)
    bias_grad_sum_kernel(float* dbias, const float* partial, int chunks, int OC) {
  const int o = blockIdx.x * kBiasGradSumThreads + threadIdx.x;
  if (o >= OC) return;
  float s = 0.0f;
  for (int g = 0; g < chunks; ++g) s += partial[size_t(g) * OC + o];
  dbias[o] += s;
}

// Row chunks of pass 1 for (N, OC) with `scratch_floats` of scratch (see the header).
inline int bias_grad_chunks(int N, int OC, size_t scratch_floats) {
  const int tiles = int(ceil_div(size_t(OC), kBiasGradColTile));
  int g = std::min(int(ceil_div(kBiasGradTargetBlocks, size_t(tiles))), int(ceil_div(size_t(N), kBiasGradMinRows)));
  g = int(std::min<size_t>(size_t(std::max(g, 1)), scratch_floats / size_t(OC)));
  PT_CHECK_MSG(g >= 1, "bias_grad: the scratch holds less than one row of partial sums");
  return g;
}

template <typename T>
void bias_grad(float* dbias, const T* dout, int N, int OC, float* scratch, size_t scratch_floats,
               cudaStream_t stream) {
  if (N <= 0 || OC <= 0) return;
  const int chunks = bias_grad_chunks(N, OC, scratch_floats);
  const int chunk_rows = int(ceil_div(size_t(N), size_t(chunks)));
  const dim3 grid(ceil_div(OC, kBiasGradColTile), ceil_div(N, chunk_rows));
  bias_grad_partial_kernel<T><<<grid, dim3(kBiasGradColTile, kBiasGradRowGroups), 0, stream>>>(scratch, dout, N, OC,
                                                                                              chunk_rows);
  PT_CUDA_CHECK_LAUNCH();
  bias_grad_sum_kernel<<<ceil_div(OC, kBiasGradSumThreads), kBiasGradSumThreads, 0, stream>>>(dbias, scratch,
                                                                                            int(grid.y), OC);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda::detail
