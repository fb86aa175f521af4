// Causal multi-head self-attention (CPU, OpenBLAS sgemm per (batch, head)).
// The input is the fused qkv projection (B, T, 3C) = [q | k | v] along the last
// axis, head h owning columns [h*HS, (h+1)*HS) of each third; HS = C / NH.
// Forward keeps the softmax probabilities (B, NH, T, T) for the backward; entries
// above the diagonal are exactly 0. Backward writes (=) the whole dinp.
#pragma once

namespace pt::cpu {

// out (B, T, C): per head softmax(q kᵀ / sqrt(HS), causal) · v, heads concatenated.
// att (B, NH, T, T) receives the probabilities. inp (B, T, 3C).
void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH);

// dinp (B, T, 3C) = gradient w.r.t. qkv. scratch (T, T) is a work buffer.
// dout (B, T, C), inp (B, T, 3C), att (B, NH, T, T) from the forward.
void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* att, int B,
                        int T, int C, int NH);

}  // namespace pt::cpu
