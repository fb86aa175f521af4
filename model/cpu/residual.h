// Residual add (CPU), also used to sum activation gradients. out may alias either input.
#pragma once

#include <cstddef>

namespace pt::cpu {

// out (N) = inp1 (N) + inp2 (N).
void residual_forward(float* out, const float* inp1, const float* inp2, int N);

// out (n) = a (n) + b (n): the step's vector add (tied-embedding and replica gradient sums,
// Backend::add); size_t-sized, as it covers whole parameter buffers.
void add(float* out, const float* a, const float* b, size_t n);

}  // namespace pt::cpu
