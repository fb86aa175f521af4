// GELU, tanh approximation as in GPT-2 (CPU). Elementwise; dinp may alias dout
// and out may alias inp.
#pragma once

namespace pt::cpu {

// out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), inp (N).
void gelu_forward(float* out, const float* inp, int N);

// dinp (N) = gelu'(inp) * dout.  inp, dout (N).
void gelu_backward(float* dinp, const float* inp, const float* dout, int N);

}  // namespace pt::cpu
