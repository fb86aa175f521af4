// CPU twin of the bf16 flash-attention kernels (model/cuda/attention_bf16.h): same
// names, argument order and layouts, computed in fp32 from bf16 inputs with the
// kernels' rounding points, so kernel and twin differ only by fp32 summation order,
// a few ulp of exp2f/log2f, and a rare one-ulp bf16 rounding flip where an fp32
// value sits on a bf16 rounding boundary. Not fast: plain loops, for tests.
//
// Layouts (as the fp32 attention, model/cpu/attention.h): inp (B, T, 3C) = [q | k | v],
// head h owning columns [h*HS, (h+1)*HS) of each third, HS = C / NH; out (B, T, C).
// lse (B, NH, T) fp32: per query row, the natural log-sum-exp of the scaled scores.
//
// Forward, per (b, h, query t), mirroring the kernel step by step:
//   c = fp32(1/sqrt(HS)) * fp32(log2 e)               scores in the log2 domain
//   for key tiles [k0, k0 + 64), k0 = 0, 64, ... <= t  (the kernel's key tiles)
//     s2_j = fp32(<q, k_j>) * c, or -inf for j > t    (causal mask)
//     m_new = max(m, max_j s2_j);  alpha = exp2f(m - m_new)
//     p_j = exp2f(s2_j - m_new)                      fp32
//     l = l * alpha + Σ_j p_j                         fp32 (unrounded p)
//     o = o * alpha + Σ_j bf16(p_j) · v_j             P rounded to bf16 for the P·V MMA
//   out = bf16(o * (1 / l));  lse = (m + log2f(l)) * fp32(ln 2)
// Backward (no T x T buffer; scratch (B, NH, T) receives D):
//   D_t = Σ_d dout_td · out_td                        fp32, from the bf16 forward output
//   p_tj = exp2f(fp32(<q_t, k_j>) * c - lse_t * fp32(log2 e)) for j <= t
//   ds_tj = p_tj · (fp32(<dout_t, v_j>) - D_t)        fp32
//   dv_j = bf16(Σ_t bf16(p_tj) dout_t)
//   dk_j = bf16(scale · Σ_t bf16(ds_tj) q_t),  dq_t = bf16(scale · Σ_j bf16(ds_tj) k_j)
// dinp (B, T, 3C) is written (=) entirely. Requires C % NH == 0 (any HS; the kernels
// additionally require HS in {32, 64, 128}).
#pragma once

#include "model/cpu/bf16.h"

namespace pt::cpu {

// Key tile of the online softmax; equals pt::cuda::kAttentionBf16Tile.
constexpr int kAttentionBf16Tile = 64;

void attention_forward_bf16(bf16* out, float* lse, const bf16* inp, int B, int T, int C, int NH);

void attention_backward_bf16(bf16* dinp, float* scratch, const bf16* dout, const bf16* inp, const bf16* out,
                             const float* lse, int B, int T, int C, int NH);

}  // namespace pt::cpu
