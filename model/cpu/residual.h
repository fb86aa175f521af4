// Residual add (CPU), also used to sum activation gradients. out may alias either input.
#pragma once

namespace pt::cpu {

// out (N) = inp1 (N) + inp2 (N).
void residual_forward(float* out, const float* inp1, const float* inp2, int N);

}  // namespace pt::cpu
