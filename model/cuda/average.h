// Element-wise mean of several equal-length device buffers, written to all of them; twin of
// model/cpu/average.h. Each element sums its count values in double in ascending order and
// divides in double (IEEE add and divide, correctly rounded on the GPU as on the CPU), so
// the result is bitwise equal to the CPU twin.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

// At most this many buffers per call (they travel as a kernel argument).
constexpr int kMaxAverageBuffers = 32;

// bufs: a HOST array of count (1..kMaxAverageBuffers) device pointers to n floats each.
void average(float* const* bufs, int count, size_t n, cudaStream_t stream);

}  // namespace pt::cuda
