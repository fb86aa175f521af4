// bf16 causal flash attention on tensor cores; see attention_bf16.h.
//
// Fragment layouts of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA,
// "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// g = lane >> 2 (groupID) and t = lane & 3 (threadID_in_group); a .b32 register holds
// two bf16, the lower-indexed element in the low 16 bits:
//   A (16 x 16, row-major): reg0 = A[g][2t, 2t+1]      reg1 = A[g+8][2t, 2t+1]
//                           reg2 = A[g][2t+8, 2t+9]    reg3 = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col"):      reg0 = B[2t, 2t+1][g]      reg1 = B[2t+8, 2t+9][g]
//   C/D (16 x 8, fp32):     c0 = C[g][2t]  c1 = C[g][2t+1]  c2 = C[g+8][2t]  c3 = C[g+8][2t+1]
// Hence, for a bf16 tile X stored row-major in shared memory with leading dimension ld:
//   * X as A (rows r0.., cols k0..): reg = pair at X[r0 + g (+8)][k0 + 2t (+8)]
//   * B[k][n] = X[n][k] (X holds the N x K operand row-major, e.g. K for S = Q Kᵀ):
//     reg0 = pair at X[n0 + g][k0 + 2t], reg1 = pair at X[n0 + g][k0 + 2t + 8]
// Both are frag_pair(X, ld, row, col) loads of two adjacent bf16 (one 32-bit word).
// A product whose B has the reduction index along tile rows (P·V: B[k=key][n=d] =
// V[key][d]) uses the transposed copy Vᵀ[d][key] in the second form.
// And C of two adjacent n-tiles j, j+1 (16 x 16 fp32) is, element for element, the A
// operand of one k16 step: A reg0 = (Cj.c0, Cj.c1), reg1 = (Cj.c2, Cj.c3),
// reg2 = (Cj+1.c0, Cj+1.c1), reg3 = (Cj+1.c2, Cj+1.c3) — used for P and dS.
#include "model/cuda/attention_bf16.h"

#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kTile = kAttentionBf16Tile;  // 64 rows per CTA tile
constexpr int kThreads = 128;              // 4 warps x 16 rows
constexpr int kPad = 8;                    // bf16 padding per shared row (16 bytes)
constexpr int kLdT = kTile + kPad;         // leading dimension of transposed (HS x 64) tiles
// Same fp32 constants as the CPU twin (model/cpu/attention_bf16.cc).
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Params {
  int T, C, NH;
  float scale;  // 1 / sqrt(HS)
  float c;      // scale * log2(e): scores in the log2 domain
};

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two adjacent bf16 X[row][col], X[row][col + 1] as one register (col even).
__device__ __forceinline__ uint32_t frag_pair(const bf16* x, int ld, int row, int col) {
  return *reinterpret_cast<const uint32_t*>(x + row * ld + col);
}

// A fragment of the 16 x 16 block of X at (r0, k0).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* x, int ld, int r0, int k0, int g, int t) {
  a[0] = frag_pair(x, ld, r0 + g, k0 + 2 * t);
  a[1] = frag_pair(x, ld, r0 + g + 8, k0 + 2 * t);
  a[2] = frag_pair(x, ld, r0 + g, k0 + 2 * t + 8);
  a[3] = frag_pair(x, ld, r0 + g + 8, k0 + 2 * t + 8);
}

// (lo, hi) rounded to nearest bf16, lo in the low 16 bits.
// Built from the bit patterns (no type punning of a local bfloat162).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
}

// A operand (16 rows x 16 columns) from two adjacent C tiles (see the file comment).
__device__ __forceinline__ void c_pair_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// The 8 bf16 of v (elements c8..c8+7 of tile row r, element i in bits 16i..16i+15
// of the little-endian 16 bytes) into column r of the transposed tile (HS x kLdT).
__device__ __forceinline__ void store_transposed(bf16* dst_t, int r, int c8, const uint4& v) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    dst_t[(c8 + i) * kLdT + r] = __ushort_as_bfloat16(static_cast<unsigned short>(w[i / 2] >> (16 * (i % 2))));
  }
}

// Rows [r0, r0 + 64) of a (rows, stride) bf16 matrix, columns [0, HS) from src, into
// the shared tile dst (64 x ld, row-major) and, when dst_t is not null, transposed
// into dst_t (HS x kLdT). Rows >= T are zero. 16-byte global loads (8 bf16).
template <int HS>
__device__ void load_tile(bf16* dst, int ld, bf16* dst_t, const bf16* src, size_t stride, int r0, int T) {
  constexpr int kChunks = HS / 8;
  for (int e = threadIdx.x; e < kTile * kChunks; e += kThreads) {
    const int r = e / kChunks, c8 = (e % kChunks) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + r < T) v = *reinterpret_cast<const uint4*>(src + size_t(r0 + r) * stride + c8);
    *reinterpret_cast<uint4*>(dst + r * ld + c8) = v;
    if (dst_t != nullptr) store_transposed(dst_t, r, c8, v);
  }
}

// Only-transposed variant (forward V).
template <int HS>
__device__ void load_tile_t(bf16* dst_t, const bf16* src, size_t stride, int r0, int T) {
  constexpr int kChunks = HS / 8;
  for (int e = threadIdx.x; e < kTile * kChunks; e += kThreads) {
    const int r = e / kChunks, c8 = (e % kChunks) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r0 + r < T) v = *reinterpret_cast<const uint4*>(src + size_t(r0 + r) * stride + c8);
    store_transposed(dst_t, r, c8, v);
  }
}

// Two 16 x 16 products over the head dimension for one warp: x = X1 · Y1ᵀ and
// y = X2 · Y2ᵀ, rows xr..xr+15 of the (64 x LD) tiles x1, x2 times rows yr..yr+15 of
// the tiles y1, y2 (B[k = d][n] = Y[yr + n][d]). The thread holds, of each result
// (two n-tiles of 8), rows g, g + 8 and columns 8nt + 2t, 8nt + 2t + 1.
template <int HS>
__device__ __forceinline__ void mma_two_16x16(float (&x)[2][4], float (&y)[2][4], const bf16* x1, const bf16* x2,
                                              int xr, const bf16* y1, const bf16* y2, int yr, int g, int t) {
  constexpr int LD = HS + kPad;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) x[nt][i] = y[nt][i] = 0.0f;
  }
#pragma unroll
  for (int kk = 0; kk < HS / 16; ++kk) {
    uint32_t a1[4], a2[4];
    load_a(a1, x1, LD, xr, kk * 16, g, t);
    load_a(a2, x2, LD, xr, kk * 16, g, t);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int yn = yr + nt * 8 + g;
      mma_bf16(x[nt], a1, frag_pair(y1, LD, yn, kk * 16 + 2 * t), frag_pair(y1, LD, yn, kk * 16 + 2 * t + 8));
      mma_bf16(y[nt], a2, frag_pair(y2, LD, yn, kk * 16 + 2 * t), frag_pair(y2, LD, yn, kk * 16 + 2 * t + 8));
    }
  }
}

// Max / sum over the 4 lanes of a quad (the lanes holding one accumulator row),
// fixed butterfly order.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// ---------------------------------------------------------------------------------
// Forward. grid (ceil(T / 64), NH, B). Shared: Q, K (64 x LD), Vᵀ (HS x kLdT).
// Thread (warp w, g, t) owns, of the warp's 16 x 64 score block, rows g and g + 8
// (r = 0, 1 below), columns 8j + 2t, 8j + 2t + 1 for n-tiles j = 0..7; and of the
// 16 x HS output the same rows, columns 8n + 2t, 8n + 2t + 1.
template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_forward_bf16_kernel(bf16* out, float* lse, const bf16* inp, Params p) {
  constexpr int LD = HS + kPad;
  constexpr int KS = HS / 16;  // k16 steps over the head dimension
  constexpr int NO = HS / 8;   // n-tiles of the output
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* ks = qs + kTile * LD;
  bf16* vt = ks + kTile * LD;
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const size_t C3 = size_t(3) * p.C;
  const bf16* base = inp + size_t(b) * p.T * C3 + size_t(h) * HS;  // q of (b, t=0, h)

  load_tile<HS>(qs, LD, nullptr, base, C3, q0, p.T);
  __syncthreads();
  uint32_t qf[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) load_a(qf[kk], qs, LD, warp * 16, kk * 16, g, t);

  const int row[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
  float o[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int k0 = 0; k0 <= q0; k0 += kTile) {
    __syncthreads();  // the previous tile's K, Vᵀ are no longer read
    load_tile<HS>(ks, LD, nullptr, base + p.C, C3, k0, p.T);
    load_tile_t<HS>(vt, base + 2 * size_t(p.C), C3, k0, p.T);
    __syncthreads();

    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        mma_bf16(s[j], qf[kk], frag_pair(ks, LD, j * 8 + g, kk * 16 + 2 * t),
                 frag_pair(ks, LD, j * 8 + g, kk * 16 + 2 * t + 8));
      }
    }
    // Scale into the log2 domain; causal mask on the diagonal tile (only there can a
    // key exceed a query of the tile: k0 < q0 implies k0 + 63 < q0 <= every row).
    const bool diag = k0 == q0;
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = k0 + j * 8 + 2 * t + (i & 1);
        const float v = diag && key > row[i >> 1] ? -INFINITY : s[j][i] * p.c;
        s[j][i] = v;
        mt[i >> 1] = fmaxf(mt[i >> 1], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // Key 0 is live for every row, so m is finite from the first tile on;
      // alpha = exp2(-inf) = 0 on the first tile.
      const float m_new = fmaxf(m[r], quad_max(mt[r]));
      alpha[r] = exp2f(m[r] - m_new);
      m[r] = m_new;
    }
    float ls[2] = {0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float pij = exp2f(s[j][i] - m[i >> 1]);  // masked: exp2(-inf) = 0
        s[j][i] = pij;
        ls[i >> 1] += pij;
      }
    }
    // Per-thread partial row sums; the 4 partials of a row share alpha, so their sum
    // (taken once after the loop) is the row's l.
    l[0] = l[0] * alpha[0] + ls[0];
    l[1] = l[1] * alpha[1] + ls[1];
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    // O += bf16(P) · V: k16 step kc covers keys [16kc, 16kc + 16) = n-tiles 2kc, 2kc+1.
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      uint32_t pa[4];
      c_pair_to_a(pa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        // B[k = key][n' = d] = V[16kc + k][8n + n'] = Vᵀ[8n + n'][16kc + k].
        mma_bf16(o[n], pa, frag_pair(vt, kLdT, n * 8 + g, kc * 16 + 2 * t),
                 frag_pair(vt, kLdT, n * 8 + g, kc * 16 + 2 * t + 8));
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = quad_sum(l[r]);
    const float inv = 1.0f / l[r];
    if (row[r] < p.T) {
      uint32_t* orow = reinterpret_cast<uint32_t*>(out + (size_t(b) * p.T + row[r]) * p.C + size_t(h) * HS);
#pragma unroll
      for (int n = 0; n < NO; ++n) orow[(n * 8 + 2 * t) / 2] = pack_bf16(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      if (t == 0) lse[(size_t(b) * p.NH + h) * p.T + row[r]] = (m[r] + log2f(l[r])) * kLn2;
    }
  }
}

// ---------------------------------------------------------------------------------
// Backward (a): D (B, NH, T) = rowsum(dout ⊙ out) per head, fp32; one warp per (b, t, h).
__global__ void attention_backward_d_bf16_kernel(float* D, const bf16* dout, const bf16* out, int B, int T, int C,
                                                 int NH) {
  const size_t rowi = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (rowi >= size_t(B) * T * NH) return;  // warp-uniform
  const int HS = C / NH;
  const int h = int(rowi % NH);
  const size_t bt = rowi / NH;
  const bf16* x = dout + bt * C + size_t(h) * HS;
  const bf16* y = out + bt * C + size_t(h) * HS;
  float s = 0.0f;
  for (int d = lane; d < HS; d += 32) s += __bfloat162float(x[d]) * __bfloat162float(y[d]);
  s = detail::warp_sum(s);
  const size_t b = bt / T, t = bt % T;
  if (lane == 0) D[(b * NH + h) * T + t] = s;
}

// ---------------------------------------------------------------------------------
// Shared by the two backward kernels.

// Tile i of a backward kernel's dynamic shared memory: 0..3 are (64 x LD) row-major
// tiles, 4, 5 (HS x kLdT) transposed tiles, in that order (smem_dkdv / smem_dq).
template <int HS>
__device__ __forceinline__ bf16* smem_tile(int i) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* tiles = reinterpret_cast<bf16*>(smem_raw);
  return i < 4 ? tiles + i * kTile * (HS + kPad) : tiles + 4 * kTile * (HS + kPad) + (i - 4) * HS * kLdT;
}

// A backward CTA: head (b, h), first row t0 of its 64-row tile, the thread's warp and
// fragment coordinates (g, t), and the head's rows 0 of q in inp (k, v at + C, + 2C),
// of dout, and of lse and D.
struct BackwardCta {
  int b, h, t0, warp, g, t;
  size_t C3;
  const bf16* base;
  const bf16* dbase;
  size_t stat0;
};

template <int HS>
__device__ __forceinline__ BackwardCta backward_cta(const bf16* inp, const bf16* dout, const Params& p) {
  BackwardCta c;
  c.b = blockIdx.z;
  c.h = blockIdx.y;
  c.t0 = blockIdx.x * kTile;
  c.warp = threadIdx.x / 32;
  c.g = (threadIdx.x % 32) >> 2;
  c.t = (threadIdx.x % 32) & 3;
  c.C3 = size_t(3) * p.C;
  c.base = inp + size_t(c.b) * p.T * c.C3 + size_t(c.h) * HS;
  c.dbase = dout + size_t(c.b) * p.T * p.C + size_t(c.h) * HS;
  c.stat0 = (size_t(c.b) * p.NH + c.h) * p.T;
  return c;
}

// ---------------------------------------------------------------------------------
// Backward (b): dK, dV. grid (ceil(T / 64), NH, B), one 64-key tile per CTA; warp w
// owns keys k0 + [16w, 16w + 16). Shared: K, V, Q, dO (64 x LD), Qᵀ, dOᵀ (HS x kLdT),
// lse·log2e and D of the current 64 query rows. Per 16-query chunk the thread holds
// of Sᵀ, dPᵀ (16 keys x 16 queries) rows (keys) g, g + 8 and columns (queries)
// 8nt + 2t, 8nt + 2t + 1 for nt = 0, 1; of dK, dV (16 keys x HS) rows g, g + 8 and
// columns 8n + 2t, 8n + 2t + 1.
template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_bf16_kernel(bf16* dinp, const bf16* dout, const bf16* inp, const float* lse,
                                        const float* D, Params p) {
  constexpr int LD = HS + kPad, NO = HS / 8;
  bf16 *ks = smem_tile<HS>(0), *vs = smem_tile<HS>(1), *qs = smem_tile<HS>(2);
  bf16 *dos = smem_tile<HS>(3), *qt = smem_tile<HS>(4), *dot = smem_tile<HS>(5);
  float* lse2_s = reinterpret_cast<float*>(dot + HS * kLdT);
  float* d_s = lse2_s + kTile;
  const auto [b, h, k0, warp, g, t, C3, base, dbase, stat0] = backward_cta<HS>(inp, dout, p);
  const int kw = warp * 16;                           // warp's first key inside the tile
  const int key[2] = {k0 + kw + g, k0 + kw + g + 8};  // the thread's two key rows

  load_tile<HS>(ks, LD, nullptr, base + p.C, C3, k0, p.T);
  load_tile<HS>(vs, LD, nullptr, base + 2 * size_t(p.C), C3, k0, p.T);
  float dk[NO][4], dv[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.0f;
  }

  for (int q0 = k0; q0 < p.T; q0 += kTile) {  // query tiles from the diagonal one, in order
    __syncthreads();  // the previous tile's Q, dO and row stats are no longer read
    load_tile<HS>(qs, LD, qt, base, C3, q0, p.T);
    load_tile<HS>(dos, LD, dot, dbase, size_t(p.C), q0, p.T);
    if (threadIdx.x < kTile) {
      const int q = q0 + threadIdx.x;
      lse2_s[threadIdx.x] = q < p.T ? lse[stat0 + q] * kLog2e : 0.0f;
      d_s[threadIdx.x] = q < p.T ? D[stat0 + q] : 0.0f;
    }
    __syncthreads();
#pragma unroll 1
    for (int qc = 0; qc < kTile / 16; ++qc) {
      const int qb = qc * 16;  // chunk's first query inside the tile
      // Warp-uniform skips: the warp's keys all past T, the chunk's queries all past
      // T, or the chunk entirely above the diagonal (every query < every key).
      if (k0 + kw >= p.T || q0 + qb >= p.T || q0 + qb + 15 < k0 + kw) continue;
      float st[2][4], dpt[2][4];
      mma_two_16x16<HS>(st, dpt, ks, vs, kw, qs, dos, qb, g, t);  // Sᵀ = K Qᵀ, dPᵀ = V dOᵀ
      // p = exp2(s·c - lse·log2e) on live entries (key <= query < T), else 0;
      // ds = p (dp - D). st becomes p, dpt becomes ds.
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int ql = qb + nt * 8 + 2 * t + (i & 1);  // query inside the tile
          const int q = q0 + ql;
          const bool live = key[i >> 1] <= q && q < p.T;
          const float pij = live ? exp2f(st[nt][i] * p.c - lse2_s[ql]) : 0.0f;
          st[nt][i] = pij;
          dpt[nt][i] = pij * (dpt[nt][i] - d_s[ql]);
        }
      }
      uint32_t pa[4], dsa[4];
      c_pair_to_a(pa, st[0], st[1]);
      c_pair_to_a(dsa, dpt[0], dpt[1]);
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        // dV += Pᵀ dO: B[k = query][n' = d] = dO[qb + k][8n + n'] = dOᵀ[8n + n'][qb + k]; dK likewise with Qᵀ.
        mma_bf16(dv[n], pa, frag_pair(dot, kLdT, n * 8 + g, qb + 2 * t), frag_pair(dot, kLdT, n * 8 + g, qb + 2 * t + 8));
        mma_bf16(dk[n], dsa, frag_pair(qt, kLdT, n * 8 + g, qb + 2 * t), frag_pair(qt, kLdT, n * 8 + g, qb + 2 * t + 8));
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] < p.T) {
      bf16* krow = dinp + (size_t(b) * p.T + key[r]) * C3 + p.C + size_t(h) * HS;
      uint32_t* dkrow = reinterpret_cast<uint32_t*>(krow);
      uint32_t* dvrow = reinterpret_cast<uint32_t*>(krow + p.C);
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        dkrow[(n * 8 + 2 * t) / 2] = pack_bf16(dk[n][2 * r] * p.scale, dk[n][2 * r + 1] * p.scale);
        dvrow[(n * 8 + 2 * t) / 2] = pack_bf16(dv[n][2 * r], dv[n][2 * r + 1]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// Backward (c): dQ. grid (ceil(T / 64), NH, B), one 64-query tile per CTA; warp w
// owns queries q0 + [16w, 16w + 16). Shared: Q, dO, K, V (64 x LD), Kᵀ (HS x kLdT).
// Per 16-key chunk the thread holds of S, dP (16 queries x 16 keys) rows g, g + 8 and
// columns 8nt + 2t, 8nt + 2t + 1; of dQ (16 x HS) rows g, g + 8, columns 8n + 2t (+1).
template <int HS>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_bf16_kernel(bf16* dinp, const bf16* dout, const bf16* inp, const float* lse,
                                      const float* D, Params p) {
  constexpr int LD = HS + kPad, NO = HS / 8;
  bf16 *qs = smem_tile<HS>(0), *dos = smem_tile<HS>(1);
  bf16 *ks = smem_tile<HS>(2), *vs = smem_tile<HS>(3), *kt = smem_tile<HS>(4);
  const auto [b, h, q0, warp, g, t, C3, base, dbase, stat0] = backward_cta<HS>(inp, dout, p);
  const int qw = warp * 16;
  const int row[2] = {q0 + qw + g, q0 + qw + g + 8};
  float lse2[2], drow[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    lse2[r] = row[r] < p.T ? lse[stat0 + row[r]] * kLog2e : 0.0f;
    drow[r] = row[r] < p.T ? D[stat0 + row[r]] : 0.0f;
  }

  load_tile<HS>(qs, LD, nullptr, base, C3, q0, p.T);
  load_tile<HS>(dos, LD, nullptr, dbase, size_t(p.C), q0, p.T);
  float dq[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;

  for (int k0 = 0; k0 <= q0; k0 += kTile) {  // key tiles up to the diagonal, in order
    __syncthreads();  // the previous tile's K, V, Kᵀ are no longer read
    load_tile<HS>(ks, LD, kt, base + p.C, C3, k0, p.T);
    load_tile<HS>(vs, LD, nullptr, base + 2 * size_t(p.C), C3, k0, p.T);
    __syncthreads();
#pragma unroll 1
    for (int kc = 0; kc < kTile / 16; ++kc) {
      const int kb = kc * 16;  // chunk's first key inside the tile
      // Warp-uniform skips: the warp's rows all past T, or every key of the chunk
      // above every query of the warp (this also skips chunks past T).
      if (q0 + qw >= p.T || k0 + kb > q0 + qw + 15) continue;
      float s[2][4], dp[2][4];
      mma_two_16x16<HS>(s, dp, qs, dos, qw, ks, vs, kb, g, t);  // S = Q Kᵀ, dP = dO Vᵀ
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int k = k0 + kb + nt * 8 + 2 * t + (i & 1);
          const int r = i >> 1;
          const bool live = k <= row[r] && row[r] < p.T;
          const float pij = live ? exp2f(s[nt][i] * p.c - lse2[r]) : 0.0f;
          dp[nt][i] = pij * (dp[nt][i] - drow[r]);  // ds
        }
      }
      uint32_t dsa[4];
      c_pair_to_a(dsa, dp[0], dp[1]);
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        // dQ += dS K: B[k = key][n' = d] = K[kb + k][8n + n'] = Kᵀ[8n + n'][kb + k].
        mma_bf16(dq[n], dsa, frag_pair(kt, kLdT, n * 8 + g, kb + 2 * t), frag_pair(kt, kLdT, n * 8 + g, kb + 2 * t + 8));
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row[r] < p.T) {
      uint32_t* qrow = reinterpret_cast<uint32_t*>(dinp + (size_t(b) * p.T + row[r]) * C3 + size_t(h) * HS);
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        qrow[(n * 8 + 2 * t) / 2] = pack_bf16(dq[n][2 * r] * p.scale, dq[n][2 * r + 1] * p.scale);
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// Host side.

constexpr size_t smem_forward(int HS) { return (2 * size_t(kTile) * (HS + kPad) + size_t(HS) * kLdT) * 2; }
constexpr size_t smem_dkdv(int HS) {
  return (4 * size_t(kTile) * (HS + kPad) + 2 * size_t(HS) * kLdT) * 2 + 2 * kTile * sizeof(float);
}
constexpr size_t smem_dq(int HS) { return (4 * size_t(kTile) * (HS + kPad) + size_t(HS) * kLdT) * 2; }
// The table in attention_bf16.h.
static_assert(smem_forward(32) == 14848 && smem_forward(64) == 27648 && smem_forward(128) == 53248);
static_assert(smem_dkdv(32) == 30208 && smem_dkdv(64) == 55808 && smem_dkdv(128) == 107008);
static_assert(smem_dq(32) == 25088 && smem_dq(64) == 46080 && smem_dq(128) == 88064);

Params make_params(int T, int C, int NH) {
  PT_CHECK_MSG(NH > 0 && C % NH == 0, "attention_bf16: C must be a multiple of NH");
  const int HS = C / NH;
  PT_CHECK_MSG(attention_bf16_supports_head_size(HS), "attention_bf16: head size must be 32, 64 or 128");
  PT_CHECK_MSG(T >= 0, "attention_bf16: T must be >= 0");
  const float scale = 1.0f / std::sqrt(float(HS));
  return Params{T, C, NH, scale, scale * kLog2e};
}

void check_aligned(const void* ptr, const char* what) {
  PT_CHECK_MSG(reinterpret_cast<uintptr_t>(ptr) % 16 == 0, what);
}

template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    PT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
}

template <int HS>
void forward_hs(bf16* out, float* lse, const bf16* inp, int B, const Params& p, cudaStream_t stream) {
  const size_t smem = smem_forward(HS);
  set_smem(attention_forward_bf16_kernel<HS>, smem);
  const dim3 grid(detail::ceil_div(p.T, kTile), p.NH, B);
  attention_forward_bf16_kernel<HS><<<grid, kThreads, smem, stream>>>(out, lse, inp, p);
  PT_CUDA_CHECK_LAUNCH();
}

template <int HS>
void backward_hs(bf16* dinp, const float* D, const bf16* dout, const bf16* inp, const float* lse, int B,
                 const Params& p, cudaStream_t stream) {
  const dim3 grid(detail::ceil_div(p.T, kTile), p.NH, B);
  const size_t smem_kv = smem_dkdv(HS);
  set_smem(attention_backward_dkdv_bf16_kernel<HS>, smem_kv);
  attention_backward_dkdv_bf16_kernel<HS><<<grid, kThreads, smem_kv, stream>>>(dinp, dout, inp, lse, D, p);
  PT_CUDA_CHECK_LAUNCH();
  const size_t smem_q = smem_dq(HS);
  set_smem(attention_backward_dq_bf16_kernel<HS>, smem_q);
  attention_backward_dq_bf16_kernel<HS><<<grid, kThreads, smem_q, stream>>>(dinp, dout, inp, lse, D, p);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_bf16_supports_head_size(int HS) { return HS == 32 || HS == 64 || HS == 128; }

void attention_forward_bf16(bf16* out, float* lse, const bf16* inp, int B, int T, int C, int NH,
                            cudaStream_t stream) {
  const Params p = make_params(T, C, NH);
  if (B == 0 || T == 0) return;
  check_aligned(out, "attention_forward_bf16: out must be 16-byte aligned");
  check_aligned(inp, "attention_forward_bf16: inp must be 16-byte aligned");
  switch (C / NH) {
    case 32: forward_hs<32>(out, lse, inp, B, p, stream); break;
    case 64: forward_hs<64>(out, lse, inp, B, p, stream); break;
    default: forward_hs<128>(out, lse, inp, B, p, stream); break;
  }
}

void attention_backward_bf16(bf16* dinp, float* scratch, const bf16* dout, const bf16* inp, const bf16* out,
                             const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  const Params p = make_params(T, C, NH);
  if (B == 0 || T == 0) return;
  check_aligned(dinp, "attention_backward_bf16: dinp must be 16-byte aligned");
  check_aligned(dout, "attention_backward_bf16: dout must be 16-byte aligned");
  check_aligned(inp, "attention_backward_bf16: inp must be 16-byte aligned");
  float* D = scratch;  // (B, NH, T)
  const size_t rows = size_t(B) * T * NH;
  attention_backward_d_bf16_kernel<<<detail::ceil_div(rows * 32, 256), 256, 0, stream>>>(D, dout, out, B, T, C, NH);
  PT_CUDA_CHECK_LAUNCH();
  switch (C / NH) {
    case 32: backward_hs<32>(dinp, D, dout, inp, lse, B, p, stream); break;
    case 64: backward_hs<64>(dinp, D, dout, inp, lse, B, p, stream); break;
    default: backward_hs<128>(dinp, D, dout, inp, lse, B, p, stream); break;
  }
}

}  // namespace pt::cuda
