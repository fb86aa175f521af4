// Causal multi-head self-attention on the GPU in bf16 with fp32 accumulation,
// flash-attention style (tiled, online softmax, no T x T matrix in memory), all
// matrix products on tensor cores (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32).
// CPU twin: model/cpu/attention_bf16.h (same names, argument order, layouts and
// rounding points; the exact fp32/bf16 operation sequence is written there).
//
// Layouts as the fp32 kernel (model/cuda/attention.h): inp (B, T, 3C) = [q | k | v],
// head h owning columns [h*HS, (h+1)*HS) of each third, HS = C / NH; out (B, T, C);
// lse (B, NH, T) fp32, natural log-sum-exp of each row's scaled scores. The backward
// recomputes p = exp(score - lse) and takes D = rowsum(dout ⊙ out) from the bf16
// forward output; scratch (B, NH, T) fp32 holds D. dinp (B, T, 3C) is written (=).
// Requirements (checked, fatal otherwise): HS in {32, 64, 128} (template parameter;
// GPT-2 124M has HS = 64); bf16 pointers 16-byte aligned (uint4 global loads).
//
// Kernels (all 128 threads = 4 warps per CTA, grid (ceil(T / 64), NH, B)):
//  * forward, per (b, h, 64-query tile): warp w owns query rows [16w, 16w + 16) of
//    the tile, keeps its Q fragments in registers, and loops over the 64-key tiles
//    up to and including the diagonal one: S = Q Kᵀ (16 x 64 per warp, 8 n-tiles of
//    m16n8k16), scale folded with log2 e, causal mask on the diagonal tile (which
//    also covers T not a multiple of 64: a live key never exceeds its query < T),
//    online softmax in fp32 registers (quad shuffles for row max; per-thread partial
//    row sums reduced once at the end), P rounded to bf16 and fed to the P·V MMA
//    directly from the S accumulator registers (the m16n8k16 C layout of two
//    adjacent n-tiles is the A layout of one k16 step). O written in bf16, lse fp32.
//  * backward (a) D = rowsum(dout ⊙ out), fp32, one warp per (b, t, h).
//  * backward (b) per (b, h, 64-key tile): warp w owns keys [16w, 16w + 16); loops
//    over the query tiles from the diagonal one to the end, in order, and inside each
//    over 16-query chunks: Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (2 n-tiles each), p, ds in fp32,
//    then dV += bf16(Pᵀ) dO and dK += bf16(dSᵀ) Q (HS/8 n-tiles each).
//  * backward (c) per (b, h, 64-query tile): warp w owns queries [16w, 16w + 16);
//    loops over the key tiles up to the diagonal, in order, in 16-key chunks:
//    S = Q Kᵀ, dP = dO Vᵀ, ds, then dQ += bf16(dS) K.
//  Chunks that lie entirely above the diagonal for a warp are skipped (warp-uniform).
// Every MMA operand comes from shared memory by 32-bit loads of bf16 pairs (rows
// padded by 8 bf16 so the 8 rows x 4 words of a fragment hit 32 distinct banks);
// B operands whose reduction index runs along tile rows (V in P·V, dO and Q in the
// dK/dV products, K in dQ) are staged a second time transposed (HS x (64 + 8)).
// Rows past T are zero-filled, so padding never injects NaN into an MMA (0 · NaN).
//
// Shared memory per CTA (bytes; bf16 tiles; "LD" = HS + 8, "LDT" = 72):
//                      HS=32    HS=64    HS=128
//   forward            14848    27648    53248   Q, K (64 x LD), Vᵀ (HS x LDT)
//   backward dK/dV     30208    55808   107008   K, V, Q, dO (64 x LD), Qᵀ, dOᵀ, lse/D rows
//   backward dQ        25088    46080    88064   Q, dO, K, V (64 x LD), Kᵀ
// (> 48 KB is opted into with cudaFuncAttributeMaxDynamicSharedMemorySize.)
// Registers per thread are dominated by the fp32 accumulators: forward O HS/2 +
// S 32 + Q fragments HS/4; dK/dV HS (both); dQ HS/2.
//
// Determinism: no atomics; every output element is owned by one thread and
// accumulated in a fixed order (tiles in order, chunks in order, MMA k-steps in
// order), so reruns give identical bits.
//
// Used by training: the CUDA backend's bf16 mode (cuda_backend.h) for head sizes
// 32, 64 and 128.
// Verification status: compiled for sm_90 (ptxas: no spills; registers forward
// 75/124/168, dK/dV 79/127/168, dQ 64/96/126 for HS 32/64/128); NOT run on a GPU in
// the task that wrote them (none there). Their source was instead executed by a
// host SIMT emulation (one thread per CUDA thread, barriers for __syncthreads and
// shuffles, mma.sync emulated from the PTX fragment tables, shared memory poisoned
// with NaN) on the test shapes, where it matched the CPU twin to fp32 rounding. That
// checks indexing, masking, fragment mappings and barriers, but not timing, real
// tensor-core rounding or performance: tests/model/cuda/attention_bf16_test.cc
// (label gpu) compares the kernels with the twin and the fp32 attention on a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace pt::cuda {

// Query/key tile (rows per CTA); equals pt::cpu::kAttentionBf16Tile.
constexpr int kAttentionBf16Tile = 64;

// Whether the kernels take head size HS (= C / NH): 32, 64 or 128.
bool attention_bf16_supports_head_size(int HS);

// out (B, T, C) bf16: per head softmax(q kᵀ / sqrt(HS), causal) · v. lse (B, NH, T).
void attention_forward_bf16(__nv_bfloat16* out, float* lse, const __nv_bfloat16* inp, int B, int T, int C, int NH,
                            cudaStream_t stream);

// dinp (B, T, 3C) bf16 = gradient w.r.t. qkv (written, =). scratch (B, NH, T) fp32.
// dout (B, T, C), inp (B, T, 3C), out (B, T, C) and lse (B, NH, T) from the forward.
void attention_backward_bf16(__nv_bfloat16* dinp, float* scratch, const __nv_bfloat16* dout,
                             const __nv_bfloat16* inp, const __nv_bfloat16* out, const float* lse, int B, int T,
                             int C, int NH, cudaStream_t stream);

}  // namespace pt::cuda
