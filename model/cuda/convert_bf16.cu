// fp32 <-> bf16 conversions on the GPU; see convert_bf16.h.
#include "model/cuda/convert_bf16.h"

#include <algorithm>

#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = size_t(1) << 16;  // grid-stride beyond 16M elements

static __global__ void fp32_to_bf16_kernel(__nv_bfloat16* out, const float* inp, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = __float2bfloat16_rn(inp[i]);
  }
}

static __global__ void bf16_to_fp32_kernel(float* out, const __nv_bfloat16* inp, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = __bfloat162float(inp[i]);
  }
}

static __global__ void round_fp32_to_bf16_kernel(float* p, size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    p[i] = __bfloat162float(__float2bfloat16_rn(p[i]));
  }
}

static __global__ void round_fp32_to_bf16_copy_kernel(float* rounded, __nv_bfloat16* out, const float* inp,
                                                      size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const __nv_bfloat16 b = __float2bfloat16_rn(inp[i]);
    rounded[i] = __bfloat162float(b);
    out[i] = b;
  }
}

unsigned int blocks_for(size_t n) { return unsigned(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)); }

}  // namespace

void convert_fp32_to_bf16(__nv_bfloat16* out, const float* inp, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  fp32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, inp, n);
  PT_CUDA_CHECK_LAUNCH();
}

void convert_bf16_to_fp32(float* out, const __nv_bfloat16* inp, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  bf16_to_fp32_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, inp, n);
  PT_CUDA_CHECK_LAUNCH();
}

void round_fp32_to_bf16(float* p, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  round_fp32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, n);
  PT_CUDA_CHECK_LAUNCH();
}

void round_fp32_to_bf16_copy(float* rounded, __nv_bfloat16* out, const float* inp, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  round_fp32_to_bf16_copy_kernel<<<blocks_for(n), kThreads, 0, stream>>>(rounded, out, inp, n);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
