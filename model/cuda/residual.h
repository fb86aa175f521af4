// Residual add on the GPU (fp32); twin of model/cpu/residual.h. One IEEE add per
// element, so the result is bitwise equal to the CPU twin. out may alias either input.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

// out (N) = inp1 (N) + inp2 (N).
void residual_forward(float* out, const float* inp1, const float* inp2, int N, cudaStream_t stream);

// out (n) = a (n) + b (n); twin of cpu::add (the step's vector add), bitwise equal.
void add(float* out, const float* a, const float* b, size_t n, cudaStream_t stream);

}  // namespace pt::cuda
