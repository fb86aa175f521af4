// Residual add on the GPU (fp32); twin of model/cpu/residual.h. One IEEE add per
// element, so the result is bitwise equal to the CPU twin. out may alias either input.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

// out (N) = inp1 (N) + inp2 (N).
void residual_forward(float* out, const float* inp1, const float* inp2, int N, cudaStream_t stream);

// The same with each operand fp32 (flag false) or bf16 (true; real bf16 storage,
// model/bf16_storage_backend.h): one fp32 add of the widened inputs, stored rounded once
// (RNE) when out is bf16; out may alias an input.
void residual_forward_typed(void* out, bool out_bf16, const void* inp1, bool inp1_bf16, const void* inp2,
                            bool inp2_bf16, int N, cudaStream_t stream);

// out (n) = a (n) + b (n); twin of cpu::add (the step's vector add), bitwise equal.
void add(float* out, const float* a, const float* b, size_t n, cudaStream_t stream);

}  // namespace pt::cuda
