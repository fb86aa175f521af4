// LayerNorm kernels and launchers for element types T and TW (float or __nv_bfloat16),
// instantiated by layernorm.cu (fp32; bf16 activations with fp32 weights) and
// layernorm_bf16.cu (bf16); .cu files only. T is the type of inp, out, dout and dinp,
// TW (default T) that of weight and bias; mean, rstd, the weight/bias gradients and the
// scratch are fp32. All arithmetic is fp32 on widened values;
// only T outputs are rounded (bf16: once, at the store).
// Row kernels use one warp per row (C is a few thousand at most, so a warp striding
// over it keeps every lane busy and needs no shared memory); lane sums are combined
// by the fixed butterfly of warp_sum. Weight/bias gradients: partial column sums over
// fixed chunks of kRowsPerChunk rows, then the partials in chunk order.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "common/check.h"
#include "model/cpu/layernorm.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda::detail {

constexpr int kLayerNormRowThreads = 256;  // 8 rows per block
constexpr int kLayerNormRowsPerBlock = kLayerNormRowThreads / kWarpSize;
constexpr int kLayerNormColThreads = 256;

template <typename T, typename TW>
__global__ void __launch_bounds__(kLayerNormRowThreads)
    layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const TW* weight, const TW* bias, int N,
                             int C) {
  const int row = blockIdx.x * kLayerNormRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;  // whole warp leaves together
  const T* x = inp + size_t(row) * C;
  T* o = out + size_t(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) sum += to_float(x[c]);
  const float m = warp_sum(sum) / float(C);
  // Two-pass variance, as in the CPU twin: no cancellation when |mean| >> std.
  float var = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float d = to_float(x[c]) - m;
    var += d * d;
  }
  const float v = warp_sum(var) / float(C);
  const float s = 1.0f / sqrtf(v + cpu::kLayerNormEps);
  for (int c = lane; c < C; c += kWarpSize) {
    store_float(o + c, (to_float(x[c]) - m) * s * to_float(weight[c]) + to_float(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dres null: dinp = g (the LayerNorm input gradient). Else dinp = dres + g', g' = g
// rounded to bf16 when round_bf16 (residual_layernorm.h); __fadd_rn keeps nvcc from
// contracting the add with g's multiply by s, so the sum is the unfused residual add's.
template <typename T, typename TW>
__global__ void __launch_bounds__(kLayerNormRowThreads)
    layernorm_backward_input_kernel(T* dinp, const T* dres, const T* dout, const T* inp, const TW* weight,
                                    const float* mean, const float* rstd, int N, int C, bool round_bf16) {
  const int row = blockIdx.x * kLayerNormRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;
  const T* x = inp + size_t(row) * C;
  const T* d = dout + size_t(row) * C;
  T* dx = dinp + size_t(row) * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (to_float(x[c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(d[c]);
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * norm;
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / float(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / float(C);
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (to_float(x[c]) - m) * s;
    const float dnorm = to_float(weight[c]) * to_float(d[c]);
    float g = (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    if (dres != nullptr) {
      if (round_bf16) g = __bfloat162float(__float2bfloat16_rn(g));
      g = __fadd_rn(to_float(dres[row * size_t(C) + c]), g);
    }
    store_float(dx + c, g);
  }
}

// grid (ceil(C / 256), chunks): thread per column, serial over the chunk's rows.
// Consecutive threads read consecutive columns of a row: coalesced.
template <typename T, int kRowsPerChunk>
__global__ void __launch_bounds__(kLayerNormColThreads)
    layernorm_weight_partial_kernel(float* part_w, float* part_b, const T* dout, const T* inp, const float* mean,
                                    const float* rstd, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * kRowsPerChunk;
  const int r1 = min(N, r0 + kRowsPerChunk);
  float w = 0.0f, b = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const float d = to_float(dout[size_t(r) * C + c]);
    w += d * ((to_float(inp[size_t(r) * C + c]) - mean[r]) * rstd[r]);
    b += d;
  }
  part_w[size_t(chunk) * C + c] = w;
  part_b[size_t(chunk) * C + c] = b;
}

// dweight, dbias (C) += the chunk partials summed in chunk order.
static __global__ void __launch_bounds__(kLayerNormColThreads)
    layernorm_weight_final_kernel(float* dweight, float* dbias, const float* part_w, const float* part_b, int chunks,
                                  int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float w = 0.0f, b = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    w += part_w[size_t(k) * C + c];
    b += part_b[size_t(k) * C + c];
  }
  dweight[c] += w;
  dbias[c] += b;
}

template <typename T, typename TW>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const TW* weight, const TW* bias, int N, int C,
                       cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_forward_kernel<T, TW><<<ceil_div(N, kLayerNormRowsPerBlock), kLayerNormRowThreads, 0, stream>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  PT_CUDA_CHECK_LAUNCH();
}

// dres: null, or the residual gradient added to the input gradient (the kernel above).
template <typename T, typename TW>
void layernorm_backward_input_residual(T* dinp, const T* dres, const T* dout, const T* inp, const TW* weight,
                                       const float* mean, const float* rstd, int N, int C, bool round_bf16,
                                       cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_backward_input_kernel<T, TW><<<ceil_div(N, kLayerNormRowsPerBlock), kLayerNormRowThreads, 0, stream>>>(
      dinp, dres, dout, inp, weight, mean, rstd, N, C, round_bf16);
  PT_CUDA_CHECK_LAUNCH();
}

template <typename T, typename TW>
void layernorm_backward_input(T* dinp, const T* dout, const T* inp, const TW* weight, const float* mean,
                              const float* rstd, int N, int C, cudaStream_t stream) {
  layernorm_backward_input_residual<T, TW>(dinp, nullptr, dout, inp, weight, mean, rstd, N, C, false, stream);
}

constexpr int layernorm_weight_chunks(int N, int rows_per_chunk) { return (N + rows_per_chunk - 1) / rows_per_chunk; }

// scratch: 2 · layernorm_weight_chunks(N, kRowsPerChunk) · C floats. fn names the
// public function in the N-too-large message.
template <typename T, int kRowsPerChunk>
void layernorm_backward_weight(float* dweight, float* dbias, const T* dout, const T* inp, const float* mean,
                               const float* rstd, int N, int C, float* scratch, cudaStream_t stream, const char* fn) {
  if (N <= 0 || C <= 0) return;
  const int chunks = layernorm_weight_chunks(N, kRowsPerChunk);
  PT_CHECK_MSG(chunks <= 65535, std::string(fn) + ": N too large for grid.y");
  float* part_w = scratch;                      // (chunks, C)
  float* part_b = scratch + size_t(chunks) * C;  // (chunks, C)
  layernorm_weight_partial_kernel<T, kRowsPerChunk>
      <<<dim3(ceil_div(C, kLayerNormColThreads), chunks), kLayerNormColThreads, 0, stream>>>(part_w, part_b, dout,
                                                                                             inp, mean, rstd, N, C);
  PT_CUDA_CHECK_LAUNCH();
  layernorm_weight_final_kernel<<<ceil_div(C, kLayerNormColThreads), kLayerNormColThreads, 0, stream>>>(
      dweight, dbias, part_w, part_b, chunks, C);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda::detail
