// Token + position embedding (CPU). Forward writes (=) the residual stream input;
// backward accumulates (+=) into the parameter gradients, in a fixed serial
// (b, t) order so repeated tokens always sum in the same order.
#pragma once

#include <cstdint>

namespace pt::cpu {

// out (B, T, C) = wte[inp[b, t]] + wpe[t].  inp (B, T), wte (V, C), wpe (maxT, C), T <= maxT.
void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C);

// dwte (V, C) += scatter of dout by token; dwpe (maxT, C) rows [0, T) += sum over b.
// dout (B, T, C), inp (B, T).
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C);

}  // namespace pt::cpu
