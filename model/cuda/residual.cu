// Residual add on the GPU; see residual.h.
#include "model/cuda/residual.h"

#include <algorithm>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/typed_dispatch.cuh"

namespace pt::cuda {
namespace {

// Element types: float or __nv_bfloat16 per operand (the typed form); one fp32 add.
template <typename TO, typename T1, typename T2>
static __global__ void residual_forward_kernel(TO* out, const T1* inp1, const T2* inp2, int N) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) detail::store_float(out + i, detail::to_float(inp1[i]) + detail::to_float(inp2[i]));
}

static __global__ void add_kernel(float* out, const float* a, const float* b, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

}  // namespace

void residual_forward(float* out, const float* inp1, const float* inp2, int N, cudaStream_t stream) {
  if (N <= 0) return;
  residual_forward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(out, inp1, inp2, N);
  PT_CUDA_CHECK_LAUNCH();
}

void residual_forward_typed(void* out, bool out_bf16, const void* inp1, bool inp1_bf16, const void* inp2,
                            bool inp2_bf16, int N, cudaStream_t stream) {
  if (N <= 0) return;
  detail::with_type(out, out_bf16, [&](auto* o) {
    detail::with_type(inp1, inp1_bf16, [&](auto* a) {
      detail::with_type(inp2, inp2_bf16, [&](auto* b) {
        residual_forward_kernel<<<detail::ceil_div(N, 256), 256, 0, stream>>>(o, a, b, N);
      });
    });
  });
  PT_CUDA_CHECK_LAUNCH();
}

void add(float* out, const float* a, const float* b, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  const size_t blocks = std::min<size_t>((n + 255) / 256, 65535);  // grid-stride beyond that
  add_kernel<<<unsigned(blocks), 256, 0, stream>>>(out, a, b, n);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
