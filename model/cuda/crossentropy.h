// Fused softmax + cross-entropy over the vocabulary on the GPU (fp32); twin of
// model/cpu/crossentropy.h. Forward: one block per row, one pass for the online
// (max, sum of exp) and one pass writing probabilities; probs may alias logits.
// Backward: dlogits = (probs - onehot(target)) * scale, computed with the same two
// IEEE roundings as the CPU twin (p*scale, then -scale at the target), so it is
// bitwise equal; dlogits may alias probs. Targets must lie in [0, V).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pt::cuda {

// losses (B, T) = -log softmax(logits)[target]; probs (B, T, V) = softmax(logits).
// logits (B, T, V), targets (B, T).
void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int B, int T,
                          int V, cudaStream_t stream);

// dlogits (B, T, V) = (probs - onehot(targets)) * scale.  probs (B, T, V), targets (B, T).
void crossentropy_softmax_backward(float* dlogits, const float* probs, const int32_t* targets, float scale, int B,
                                   int T, int V, cudaStream_t stream);

}  // namespace pt::cuda
