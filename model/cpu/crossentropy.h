// Softmax + cross-entropy over the vocabulary for rows of logits (CPU); the
// classifier of the last stage runs it chunk by chunk over the N = B*T rows
// (stage_model.cc), so N here is any number of rows. Neither op keeps
// probabilities: the forward writes only the per-row loss, the backward
// recomputes each row's softmax from the logits (the same fixed-order max and
// sum as the forward, so on the same logits it sees the same log-sum-exp).
// Targets must lie in [0, V).
#pragma once

#include <cstdint>

namespace pt::cpu {

// losses (N) = log(sum exp(x - max)) - (x[target] - max) = -log softmax(x)[target]
// for each row x of logits (N, V); targets (N). Finite even when the target's
// probability underflows in fp32. stats (2N, may be null): each row's (max, sum of
// exp(x - max)), for a backward on the same logits.
void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, float* stats);

// dlogits (N, V) = (softmax(logits) - onehot(targets)) * scale: the gradient of
// scale * sum(losses). logits (N, V), targets (N); dlogits may alias logits.
// Rounding: p = e * (1/sum), then p * scale, then -scale at the target. stats: the
// forward's on these logits (the same bits as recomputing them), or null to recompute.
void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                           const float* stats);

}  // namespace pt::cpu
