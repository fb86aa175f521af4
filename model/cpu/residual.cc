// Residual add (CPU); see residual.h.
#include "model/cpu/residual.h"

#include <cstddef>

namespace pt::cpu {

void residual_forward(float* out, const float* inp1, const float* inp2, int N) {
  for (size_t i = 0; i < size_t(N); ++i) out[i] = inp1[i] + inp2[i];
}

}  // namespace pt::cpu
