// Global gradient norm on the GPU; twin of optim/grad_norm.h. sum_of_squares is
// computed in double (squares of floats are exact in double; only the additions
// round) with a deterministic two-pass reduction: kSumOfSquaresBlocks fixed
// partitions (a constant, not the SM count, so the bits do not depend on the GPU
// model), each reduced by a fixed tree, then the partials by a fixed tree.
// combine_norm adds per-tensor values in the order given (the caller passes them in
// ascending global tensor id, the canonical order of optim/grad_norm.h) and takes
// the square root, all on the device, so the clip factor never needs a host sync.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace pt::cuda {

constexpr int kSumOfSquaresBlocks = 256;

// *out (1, device) = sum_i x[i]² in double.  x (n), scratch (kSumOfSquaresBlocks doubles).
void sum_of_squares(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream);

// out[k] (count, device) = sum_i x[table[2k] + i]² over i < table[2k + 1], for every k:
// the tensors of one buffer (offset, numel pairs in a device table of 2·count size_t),
// bitwise what count calls of sum_of_squares give (the same partitions and trees), in two
// launches instead of 2·count. scratch: count · kSumOfSquaresBlocks doubles.
void sums_of_squares(double* out, const float* x, const size_t* table, int count, double* scratch,
                     cudaStream_t stream);

// *norm (1, device) = sqrt(sum_k per_tensor[k]), summed in k order.  per_tensor (count).
void combine_norm(double* norm, const double* per_tensor, int count, cudaStream_t stream);

}  // namespace pt::cuda
