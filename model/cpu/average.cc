// Element-wise mean of buffers (CPU); see average.h.
#include "model/cpu/average.h"

namespace pt::cpu {

void average(float* const* bufs, int count, size_t n) {
  const double M = double(count);
  for (size_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (int p = 0; p < count; ++p) sum += double(bufs[p][i]);
    const float mean = float(sum / M);
    for (int p = 0; p < count; ++p) bufs[p][i] = mean;
  }
}

}  // namespace pt::cpu
