// Global norm on the GPU; see global_norm.h.
#include "optim/cuda/global_norm.h"

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

constexpr int kThreads = 256;

// Fixed-tree block sum of one double per thread; the result is in buf[0].
__device__ double block_sum(double v, double* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  return buf[0];
}

// Partition blockIdx.x (of kSumOfSquaresBlocks) of x (n): its block's fixed-tree sum.
__device__ double partition_sum_of_squares(const float* x, size_t n, double* buf) {
  double s = 0.0;
  for (size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += size_t(kSumOfSquaresBlocks) * kThreads) {
    const double xi = x[i];
    s += xi * xi;
  }
  return block_sum(s, buf);
}

// Grid (kSumOfSquaresBlocks, count): partition blockIdx.x of tensor blockIdx.y (count 1:
// x itself, n; else table[2k], table[2k + 1] within x) into partial[k · blocks + x].
static __global__ void __launch_bounds__(kThreads) sum_of_squares_partial_kernel(double* partial, const float* x,
                                                                                 size_t n, const size_t* table) {
  __shared__ double buf[kThreads];
  const int k = blockIdx.y;
  const float* t = table ? x + table[2 * k] : x;
  const size_t numel = table ? table[2 * k + 1] : n;
  const double total = partition_sum_of_squares(t, numel, buf);
  if (threadIdx.x == 0) partial[size_t(k) * kSumOfSquaresBlocks + blockIdx.x] = total;
}

// Grid (count): out[k] = the fixed-tree sum of tensor k's partials.
static __global__ void __launch_bounds__(kThreads) sum_of_squares_final_kernel(double* out, const double* partial) {
  static_assert(kSumOfSquaresBlocks == kThreads, "one partial per thread");
  __shared__ double buf[kThreads];
  const double total = block_sum(partial[size_t(blockIdx.x) * kSumOfSquaresBlocks + threadIdx.x], buf);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

static __global__ void combine_norm_kernel(double* norm, const double* per_tensor, int count) {
  double total = 0.0;
  for (int k = 0; k < count; ++k) total += per_tensor[k];  // canonical order, one thread
  *norm = sqrt(total);
}

}  // namespace

void sum_of_squares(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream) {
  sum_of_squares_partial_kernel<<<kSumOfSquaresBlocks, kThreads, 0, stream>>>(scratch, x, n, nullptr);
  PT_CUDA_CHECK_LAUNCH();
  sum_of_squares_final_kernel<<<1, kThreads, 0, stream>>>(out, scratch);
  PT_CUDA_CHECK_LAUNCH();
}

void sums_of_squares(double* out, const float* x, const size_t* table, int count, double* scratch,
                     cudaStream_t stream) {
  if (count <= 0) return;
  sum_of_squares_partial_kernel<<<dim3(kSumOfSquaresBlocks, unsigned(count)), kThreads, 0, stream>>>(scratch, x, 0,
                                                                                                    table);
  PT_CUDA_CHECK_LAUNCH();
  sum_of_squares_final_kernel<<<unsigned(count), kThreads, 0, stream>>>(out, scratch);
  PT_CUDA_CHECK_LAUNCH();
}

void combine_norm(double* norm, const double* per_tensor, int count, cudaStream_t stream) {
  combine_norm_kernel<<<1, 1, 0, stream>>>(norm, per_tensor, count);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
