// Causal multi-head self-attention on the GPU (fp32), flash-attention style: the
// T x T score matrix is never materialized. Twin of model/cpu/attention.h: same
// input layout (qkv (B, T, 3C) = [q | k | v], head h owning columns [h*HS, (h+1)*HS)
// of each third, HS = C / NH) and output layout (out (B, T, C), heads concatenated).
//
// Deviation from the CPU twin (saved state): the forward saves the log-sum-exp of
// each score row, lse (B, NH, T) = m + log(sum_s exp(score_s - m)), instead of the
// probabilities att (B, NH, T, T). The backward recomputes the probabilities from
// q, k and lse (p = exp(score - lse)) and needs the forward output too, for
// D = rowsum(dout ⊙ out) = <att_row, datt_row>; its scratch is (B, NH, T) floats
// (that D), not (T, T). Hence the signatures:
//   forward  (out, lse, inp, ...)                     vs CPU (out, att, inp, ...)
//   backward (dinp, scratch, dout, inp, out, lse, ...) vs CPU (dinp, scratch, dout, inp, att, ...)
//
// Kernels: 32-query x 32-key tiles, 256 threads, q/k/v/dout tiles staged in shared
// memory with a padded row (HS + 1) against bank conflicts; online softmax in the
// forward. The backward is two kernels, both deterministic (no atomics): one per key
// tile accumulating dk, dv over the query tiles in order, one per query tile
// accumulating dq over the key tiles in order. Requires HS <= kAttentionMaxHeadSize.
#pragma once

#include <cuda_runtime.h>

namespace pt::cuda {

constexpr int kAttentionMaxHeadSize = 128;

// out (B, T, C): per head softmax(q kᵀ / sqrt(HS), causal) · v. lse (B, NH, T) receives
// each row's log-sum-exp of the scaled scores. inp (B, T, 3C).
void attention_forward(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                       cudaStream_t stream);

// dinp (B, T, 3C) = gradient w.r.t. qkv (written, =). scratch (B, NH, T).
// dout (B, T, C), inp (B, T, 3C), out (B, T, C) and lse (B, NH, T) from the forward.
void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* out,
                        const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

}  // namespace pt::cuda
