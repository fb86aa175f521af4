// GELU on the GPU; see gelu.h. One thread per element; the formulas are the CPU
// twin's, term for term.
#include "model/cuda/gelu.h"

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

static __global__ void gelu_forward_kernel(float* out, const float* inp, int N) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = inp[i];
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  out[i] = 0.5f * x * (1.0f + tanhf(u));
}

static __global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, int N) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = inp[i];
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float th = tanhf(u);
  const float sech2 = 1.0f - th * th;
  const float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  dinp[i] = local * dout[i];
}

}  // namespace

void gelu_forward(float* out, const float* inp, int N, cudaStream_t stream) {
  if (N <= 0) return;
  gelu_forward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(out, inp, N);
  PT_CUDA_CHECK_LAUNCH();
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int N, cudaStream_t stream) {
  if (N <= 0) return;
  gelu_backward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(dinp, inp, dout, N);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
