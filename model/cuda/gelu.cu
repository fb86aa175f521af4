// GELU on the GPU; see gelu.h. One thread per element; the formulas are the CPU
// twin's, term for term.
#include "model/cuda/gelu.h"

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/typed_dispatch.cuh"

namespace pt::cuda {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// Element types: float or __nv_bfloat16 per operand (the typed forms); fp32 arithmetic.
template <typename TO, typename TI>
static __global__ void gelu_forward_kernel(TO* out, const TI* inp, int N) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = detail::to_float(inp[i]);
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  detail::store_float(out + i, 0.5f * x * (1.0f + tanhf(u)));
}

template <typename TD, typename TI, typename TDY>
static __global__ void gelu_backward_kernel(TD* dinp, const TI* inp, const TDY* dout, int N) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float x = detail::to_float(inp[i]);
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float th = tanhf(u);
  const float sech2 = 1.0f - th * th;
  const float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  detail::store_float(dinp + i, local * detail::to_float(dout[i]));
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

void gelu_forward_typed(void* out, bool out_bf16, const void* inp, bool inp_bf16, int N, cudaStream_t stream) {
  if (N <= 0) return;
  detail::with_type(out, out_bf16, [&](auto* o) {
    detail::with_type(inp, inp_bf16, [&](auto* x) {
      gelu_forward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(o, x, N);
    });
  });
  PT_CUDA_CHECK_LAUNCH();
}

void gelu_backward_typed(void* dinp, bool dinp_bf16, const void* inp, bool inp_bf16, const void* dout,
                         bool dout_bf16, int N, cudaStream_t stream) {
  if (N <= 0) return;
  detail::with_type(dinp, dinp_bf16, [&](auto* dx) {
    detail::with_type(inp, inp_bf16, [&](auto* x) {
      detail::with_type(dout, dout_bf16, [&](auto* dy) {
        gelu_backward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(dx, x, dy, N);
      });
    });
  });
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
