// Residual add on the GPU (fp32); twin of model/cpu/residual.h. One IEEE add per
// element, so the result is bitwise equal to the CPU twin. out may alias either input.
#pragma once

#include <cuda_runtime.h>

namespace pt::cuda {

// out (N) = inp1 (N) + inp2 (N).
void residual_forward(float* out, const float* inp1, const float* inp2, int N, cudaStream_t stream);

}  // namespace pt::cuda
