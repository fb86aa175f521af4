// AdamW on the GPU; see adamw.h. The per-launch tensor table travels as a kernel
// argument (32 entries x 48 bytes, well under the 4 KB parameter limit), so no
// device-side table needs allocating or synchronizing. grid.y = tensor, grid.x
// strides over the tensor's elements.
#include "optim/cuda/adamw.h"

#include <algorithm>
#include <cmath>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

struct DeviceTensor {
  float* params;
  const float* grads;
  float* m;
  float* v;
  size_t n;
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  float bc1, bc2;  // 1 - beta^t, computed on the host exactly as the CPU twin does
};

struct TensorTable {
  DeviceTensor t[kAdamWMaxTensorsPerLaunch];
};

static __global__ void adamw_kernel(TensorTable table) {
  const DeviceTensor& d = table.t[blockIdx.y];
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < d.n; i += size_t(gridDim.x) * blockDim.x) {
    const float g = d.grads[i] * d.grad_scale;
    const float mi = d.beta1 * d.m[i] + (1.0f - d.beta1) * g;
    const float vi = d.beta2 * d.v[i] + (1.0f - d.beta2) * g * g;
    d.m[i] = mi;
    d.v[i] = vi;
    const float mhat = mi / d.bc1;
    const float vhat = vi / d.bc2;
    const float p = d.params[i];
    d.params[i] = p - d.lr * (mhat / (sqrtf(vhat) + d.eps) + d.weight_decay * p);
  }
}

DeviceTensor to_device(const AdamWTensor& t) {
  const AdamWParams& p = t.hp;
  return DeviceTensor{t.params,     t.grads,       t.m,          t.v,
                      t.n,          p.lr,          p.beta1,      p.beta2,
                      p.eps,        p.weight_decay, p.grad_scale,
                      1.0f - std::pow(p.beta1, float(p.t)), 1.0f - std::pow(p.beta2, float(p.t))};
}

constexpr int kThreads = 256;
constexpr unsigned int kMaxBlocksPerTensor = 1024;  // grid-stride beyond this

}  // namespace

void adamw_update_multi(const AdamWTensor* tensors, int count, cudaStream_t stream) {
  for (int first = 0; first < count; first += kAdamWMaxTensorsPerLaunch) {
    const int k = std::min(kAdamWMaxTensorsPerLaunch, count - first);
    TensorTable table{};
    size_t max_n = 0;
    for (int i = 0; i < k; ++i) {
      table.t[i] = to_device(tensors[first + i]);
      max_n = std::max(max_n, tensors[first + i].n);
    }
    if (max_n == 0) continue;
    const unsigned int blocks = std::min(kMaxBlocksPerTensor, detail::ceil_div(max_n, kThreads));
    adamw_kernel<<<dim3(blocks, k), kThreads, 0, stream>>>(table);
    PT_CUDA_CHECK_LAUNCH();
  }
}

void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& p,
                  cudaStream_t stream) {
  const AdamWTensor t{params, grads, m, v, n, p};
  adamw_update_multi(&t, 1, stream);
}

}  // namespace pt::cuda
