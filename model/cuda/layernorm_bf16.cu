// bf16 LayerNorm on the GPU; see layernorm_bf16.h. The kernels are the fp32 ones
// (layernorm.cu) with bf16 loads widened by __bfloat162float and bf16 stores
// rounded by __float2bfloat16_rn.
#include "model/cuda/layernorm_bf16.h"

#include "model/cpu/layernorm.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

using detail::kWarpSize;
using detail::warp_sum;

constexpr int kRowThreads = 256;  // 8 rows per block
constexpr int kRowsPerBlock = kRowThreads / kWarpSize;
constexpr int kColThreads = 256;

__device__ inline float ld(const __nv_bfloat16* p, size_t i) { return __bfloat162float(p[i]); }

static __global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_bf16_kernel(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                                  const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;  // whole warp leaves together
  const __nv_bfloat16* x = inp + size_t(row) * C;
  __nv_bfloat16* o = out + size_t(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) sum += ld(x, c);
  const float m = warp_sum(sum) / float(C);
  float var = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float d = ld(x, c) - m;
    var += d * d;
  }
  const float v = warp_sum(var) / float(C);
  const float s = 1.0f / sqrtf(v + cpu::kLayerNormEps);
  for (int c = lane; c < C; c += kWarpSize) {
    o[c] = __float2bfloat16_rn((ld(x, c) - m) * s * ld(weight, c) + ld(bias, c));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

static __global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_input_bf16_kernel(__nv_bfloat16* dinp, const __nv_bfloat16* dout,
                                         const __nv_bfloat16* inp, const __nv_bfloat16* weight,
                                         const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;
  const __nv_bfloat16* x = inp + size_t(row) * C;
  const __nv_bfloat16* d = dout + size_t(row) * C;
  __nv_bfloat16* dx = dinp + size_t(row) * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (ld(x, c) - m) * s;
    const float dnorm = ld(weight, c) * ld(d, c);
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * norm;
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / float(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / float(C);
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (ld(x, c) - m) * s;
    const float dnorm = ld(weight, c) * ld(d, c);
    dx[c] = __float2bfloat16_rn((dnorm - dnorm_mean - norm * dnorm_norm_mean) * s);
  }
}

// grid (ceil(C / 256), chunks): thread per column, serial over the chunk's rows.
static __global__ void __launch_bounds__(kColThreads)
    layernorm_weight_partial_bf16_kernel(float* part_w, float* part_b, const __nv_bfloat16* dout,
                                         const __nv_bfloat16* inp, const float* mean, const float* rstd, int N,
                                         int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * kLayerNormBf16RowsPerChunk;
  const int r1 = min(N, r0 + kLayerNormBf16RowsPerChunk);
  float w = 0.0f, b = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const float d = ld(dout, size_t(r) * C + c);
    w += d * ((ld(inp, size_t(r) * C + c) - mean[r]) * rstd[r]);
    b += d;
  }
  part_w[size_t(chunk) * C + c] = w;
  part_b[size_t(chunk) * C + c] = b;
}

static __global__ void __launch_bounds__(kColThreads)
    layernorm_weight_final_bf16_kernel(float* dweight, float* dbias, const float* part_w, const float* part_b,
                                       int chunks, int C) {
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

int weight_chunks(int N) { return (N + kLayerNormBf16RowsPerChunk - 1) / kLayerNormBf16RowsPerChunk; }

}  // namespace

void layernorm_forward_bf16(__nv_bfloat16* out, float* mean, float* rstd, const __nv_bfloat16* inp,
                            const __nv_bfloat16* weight, const __nv_bfloat16* bias, int N, int C,
                            cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_forward_bf16_kernel<<<detail::ceil_div(N, kRowsPerBlock), kRowThreads, 0, stream>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  PT_CUDA_CHECK_LAUNCH();
}

void layernorm_backward_input_bf16(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                   const __nv_bfloat16* weight, const float* mean, const float* rstd, int N, int C,
                                   cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_backward_input_bf16_kernel<<<detail::ceil_div(N, kRowsPerBlock), kRowThreads, 0, stream>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  PT_CUDA_CHECK_LAUNCH();
}

size_t layernorm_backward_weight_bf16_scratch_floats(int N, int C) { return 2 * size_t(weight_chunks(N)) * C; }

void layernorm_backward_weight_bf16(float* dweight, float* dbias, const __nv_bfloat16* dout,
                                    const __nv_bfloat16* inp, const float* mean, const float* rstd, int N, int C,
                                    float* scratch, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const int chunks = weight_chunks(N);
  PT_CHECK_MSG(chunks <= 65535, "layernorm_backward_weight_bf16: N too large for grid.y");
  float* part_w = scratch;                      // (chunks, C)
  float* part_b = scratch + size_t(chunks) * C;  // (chunks, C)
  layernorm_weight_partial_bf16_kernel<<<dim3(detail::ceil_div(C, kColThreads), chunks), kColThreads, 0, stream>>>(
      part_w, part_b, dout, inp, mean, rstd, N, C);
  PT_CUDA_CHECK_LAUNCH();
  layernorm_weight_final_bf16_kernel<<<detail::ceil_div(C, kColThreads), kColThreads, 0, stream>>>(
      dweight, dbias, part_w, part_b, chunks, C);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
