// Softmax + cross-entropy over the vocabulary for rows of logits on the GPU
// (fp32 arithmetic; the typed forms also take bf16 logits); twin of
// model/cpu/crossentropy.h (same names, arguments and contract: no probabilities
// are kept, the backward recomputes each row's softmax).
// Both ops run one block per row: an online (max, sum of exp) pass merged in a
// fixed tree (same bits every run), then the forward writes the row's loss and
// the backward writes the row's gradient. dlogits may alias logits.
// Targets must lie in [0, V).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pt::cuda {

// losses (N) = -log softmax(logits)[target]; logits (N, V), targets (N). stats (2N,
// may be null): each row's (max, sum of exp(x - max)) for a backward on the same logits.
void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, float* stats,
                          cudaStream_t stream);

// dlogits (N, V) = (softmax(logits) - onehot(targets)) * scale, rounded as the
// CPU twin: p = e * (1/sum), then p * scale, then -scale at the target. stats: the
// forward's on these logits (the bits the statistics pass would give; it is skipped,
// one read of the logits fewer), or null to recompute them.
void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                           const float* stats, cudaStream_t stream);

// The same with logits and dlogits each fp32 (flag false) or bf16 (true; real bf16
// storage, model/bf16_storage_backend.h): bf16 logits read widened, bf16 dlogits stored
// rounded once (RNE), the fp32 arithmetic and reduction tree above; the fp32 instances
// are the kernels of the fp32 forms. On bf16 logits the losses are bitwise the fp32
// forms' on the widened values, and bf16 dlogits their dlogits rounded. In place
// (dlogits == logits) requires both flags equal.
void crossentropy_forward_typed(float* losses, const void* logits, bool logits_bf16, const int32_t* targets, int N,
                                int V, float* stats, cudaStream_t stream);
void crossentropy_backward_typed(void* dlogits, bool dlogits_bf16, const void* logits, bool logits_bf16,
                                 const int32_t* targets, float scale, int N, int V, const float* stats,
                                 cudaStream_t stream);

}  // namespace pt::cuda
