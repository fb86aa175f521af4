// Fused softmax + cross-entropy over the vocabulary (CPU). Forward turns logits
// into probabilities (in place allowed: probs may alias logits) and writes the
// per-token losses; backward writes dlogits = (probs - onehot(target)) * scale
// (in place allowed: dlogits may alias probs). Targets must lie in [0, V).
#pragma once

#include <cstdint>

namespace pt::cpu {

// losses (B, T) = -log softmax(logits)[target]; probs (B, T, V) = softmax(logits).
// logits (B, T, V), targets (B, T).
void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int B, int T,
                          int V);

// dlogits (B, T, V) = (probs - onehot(targets)) * scale: the gradient of
// scale * sum(losses). probs (B, T, V), targets (B, T).
void crossentropy_softmax_backward(float* dlogits, const float* probs, const int32_t* targets, float scale, int B,
                                   int T, int V);

}  // namespace pt::cpu
