// AdamW on the GPU with fp32 master weights and fp32 moments; twin of optim/adamw.h
// (same update, term for term, and the same host-side bias corrections
// 1 - beta^t computed in float with std::pow). Every element is updated
// independently, so the result does not depend on the launch shape; it differs
// from the CPU twin only by FMA contraction (a few ulp).
// adamw_update_multi updates many tensors, each with its own hyper-parameters
// (weight decay, step count), in one launch per kAdamWMaxTensorsPerLaunch tensors.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "optim/adamw.h"

namespace pt::cuda {

// params, grads, m, v: (n,) device memory.
void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& p,
                  cudaStream_t stream);

// One tensor of a multi-tensor update; the pointers are device memory of n floats.
struct AdamWTensor {
  float* params = nullptr;
  const float* grads = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  size_t n = 0;
  AdamWParams hp;
};

constexpr int kAdamWMaxTensorsPerLaunch = 32;

// Applies adamw_update to every tensor (count >= 0; the array is host memory).
void adamw_update_multi(const AdamWTensor* tensors, int count, cudaStream_t stream);

}  // namespace pt::cuda
