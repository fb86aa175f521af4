// LayerNorm on the GPU; see layernorm.h. Row kernels use one warp per row (C is a
// few thousand at most, so a warp striding over it keeps every lane busy and needs
// no shared memory); lane sums are combined by the fixed butterfly of warp_sum.
#include "model/cuda/layernorm.h"

#include "model/cpu/layernorm.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

using detail::kWarpSize;
using detail::warp_sum;

constexpr int kRowThreads = 256;  // 8 rows per block
constexpr int kRowsPerBlock = kRowThreads / kWarpSize;

static __global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                             const float* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;  // whole warp leaves together
  const float* x = inp + size_t(row) * C;
  float* o = out + size_t(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) sum += x[c];
  const float m = warp_sum(sum) / float(C);
  // Two-pass variance, as in the CPU twin: no cancellation when |mean| >> std.
  float var = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float d = x[c] - m;
    var += d * d;
  }
  const float v = warp_sum(var) / float(C);
  const float s = 1.0f / sqrtf(v + cpu::kLayerNormEps);
  for (int c = lane; c < C; c += kWarpSize) o[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

static __global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                    const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  const float* d = dout + size_t(row) * C;
  float* dx = dinp + size_t(row) * C;
  const float m = mean[row], s = rstd[row];
  float dnorm_sum = 0.0f, dnorm_norm_sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (x[c] - m) * s;
    const float dnorm = weight[c] * d[c];
    dnorm_sum += dnorm;
    dnorm_norm_sum += dnorm * norm;
  }
  const float dnorm_mean = warp_sum(dnorm_sum) / float(C);
  const float dnorm_norm_mean = warp_sum(dnorm_norm_sum) / float(C);
  for (int c = lane; c < C; c += kWarpSize) {
    const float norm = (x[c] - m) * s;
    const float dnorm = weight[c] * d[c];
    dx[c] = (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
  }
}

// grid (ceil(C / 256), chunks): thread per column, serial over the chunk's rows.
// Consecutive threads read consecutive columns of a row: coalesced.
static __global__ void layernorm_weight_partial_kernel(float* part_w, float* part_b, const float* dout,
                                                       const float* inp, const float* mean, const float* rstd,
                                                       int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * kLayerNormRowsPerChunk;
  const int r1 = min(N, r0 + kLayerNormRowsPerChunk);
  float w = 0.0f, b = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const float d = dout[size_t(r) * C + c];
    w += d * ((inp[size_t(r) * C + c] - mean[r]) * rstd[r]);
    b += d;
  }
  part_w[size_t(chunk) * C + c] = w;
  part_b[size_t(chunk) * C + c] = b;
}

static __global__ void layernorm_weight_final_kernel(float* dweight, float* dbias, const float* part_w,
                                                     const float* part_b, int chunks, int C) {
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

int weight_chunks(int N) { return (N + kLayerNormRowsPerChunk - 1) / kLayerNormRowsPerChunk; }

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_forward_kernel<<<detail::ceil_div(N, kRowsPerBlock), kRowThreads, 0, stream>>>(out, mean, rstd, inp,
                                                                                           weight, bias, N, C);
  PT_CUDA_CHECK_LAUNCH();
}

void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
  if (N <= 0) return;
  layernorm_backward_input_kernel<<<detail::ceil_div(N, kRowsPerBlock), kRowThreads, 0, stream>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  PT_CUDA_CHECK_LAUNCH();
}

size_t layernorm_backward_weight_scratch_floats(int N, int C) { return 2 * size_t(weight_chunks(N)) * C; }

void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* mean, const float* rstd, int N, int C, float* scratch,
                               cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const int chunks = weight_chunks(N);
  PT_CHECK_MSG(chunks <= 65535, "layernorm_backward_weight: N too large for grid.y");
  float* part_w = scratch;                      // (chunks, C)
  float* part_b = scratch + size_t(chunks) * C;  // (chunks, C)
  layernorm_weight_partial_kernel<<<dim3(detail::ceil_div(C, 256), chunks), 256, 0, stream>>>(
      part_w, part_b, dout, inp, mean, rstd, N, C);
  PT_CUDA_CHECK_LAUNCH();
  layernorm_weight_final_kernel<<<detail::ceil_div(C, 256), 256, 0, stream>>>(dweight, dbias, part_w, part_b,
                                                                              chunks, C);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
