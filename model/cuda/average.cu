// Element-wise mean of device buffers; see average.h.
#include "model/cuda/average.h"

#include <algorithm>
#include <string>

#include "common/check.h"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

struct Buffers {
  float* p[kMaxAverageBuffers];
};

static __global__ void average_kernel(Buffers bufs, int count, size_t n) {
  const double M = double(count);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    double sum = 0.0;
    for (int p = 0; p < count; ++p) sum = __dadd_rn(sum, double(bufs.p[p][i]));
    const float mean = __double2float_rn(__ddiv_rn(sum, M));
    for (int p = 0; p < count; ++p) bufs.p[p][i] = mean;
  }
}

}  // namespace

void average(float* const* bufs, int count, size_t n, cudaStream_t stream) {
  PT_CHECK_MSG(count >= 1 && count <= kMaxAverageBuffers,
               "cuda::average takes 1.." + std::to_string(kMaxAverageBuffers) + " buffers, got " +
                   std::to_string(count));
  if (n == 0) return;
  Buffers b{};
  for (int p = 0; p < count; ++p) b.p[p] = bufs[p];
  const size_t blocks = std::min<size_t>((n + 255) / 256, 65535);  // grid-stride beyond that
  average_kernel<<<unsigned(blocks), 256, 0, stream>>>(b, count, n);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
