// Causal attention on the GPU (fp32, tiled, online softmax); see attention.h.
// Index conventions inside the kernels: a block owns one (b, h) and one 32-row tile
// (query tile for the forward and dq, key tile for dk/dv); qi/kj index rows inside
// the 32-row tiles, qg/kg are the global positions, d indexes the head dimension.
// An entry (qg, kg) is live iff kg <= qg < T (causal; rows past T are padding).
// Shared tiles are zero-filled past T so padding never injects NaN/garbage into
// the sums; dead entries get probability 0.
// Thread ownership: the score tile has 1024 entries, 4 per thread (kj = lane,
// qi = warp + 8r); accumulators (32 rows x HS) are spread e = tid + 256r,
// row = e / HS, d = e % HS, in registers indexed only by the unrolled r.
#include "model/cuda/attention.h"

#include <cmath>

#include "common/check.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

using detail::warp_max;
using detail::warp_sum;

constexpr int kTile = 32;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kScoresPerThread = kTile * kTile / kThreads;                  // 4
constexpr int kAccPerThread = kTile * kAttentionMaxHeadSize / kThreads;     // 16
constexpr int kScoreLd = kTile + 1;

struct Dims {
  int T, C, NH, HS;
  float scale;  // 1 / sqrt(HS)
};

// Loads rows [t0, t0 + 32) of one third (which: 0 q, 1 k, 2 v) of head h from the
// (B, T, 3C) qkv buffer — or of head h from a (B, T, C) buffer when stride == C and
// which == 0 — into a (32, HS + 1) shared tile; rows >= T are zero.
__device__ void load_tile(float* tile, const float* base, int b, int t0, int which, int stride, const Dims& g) {
  const int ld = g.HS + 1;
  for (int e = threadIdx.x; e < kTile * g.HS; e += kThreads) {
    const int row = e / g.HS, d = e % g.HS;
    const int t = t0 + row;
    tile[row * ld + d] =
        t < g.T ? base[(size_t(b) * g.T + t) * stride + size_t(which) * g.C + size_t(blockIdx.y) * g.HS + d]
                : 0.0f;
  }
}

// The k and v tiles of key rows [k0, k0 + 32).
__device__ void load_kv(float* ks, float* vs, const float* inp, int b, int k0, const Dims& g) {
  load_tile(ks, inp, b, k0, 1, 3 * g.C, g);
  load_tile(vs, inp, b, k0, 2, 3 * g.C, g);
}

__device__ float dot_rows(const float* x, const float* y, int n) {
  float s = 0.0f;
  for (int d = 0; d < n; ++d) s += x[d] * y[d];
  return s;
}

// grid (ceil(T / 32), NH, B). Shared: q, k, v tiles (32, HS+1) each, scores (32, 33),
// and per-row running max, sum and rescale factor.
static __global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* out, float* lse, const float* inp, Dims g) {
  extern __shared__ float smem[];
  const int ld = g.HS + 1;
  float* qs = smem;
  float* ks = qs + kTile * ld;
  float* vs = ks + kTile * ld;
  float* sc = vs + kTile * ld;        // (32, 33)
  float* row_m = sc + kTile * kScoreLd;
  float* row_l = row_m + kTile;
  float* row_alpha = row_l + kTile;
  const int b = blockIdx.z, h = blockIdx.y;
  const int q0 = blockIdx.x * kTile;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  load_tile(qs, inp, b, q0, 0, 3 * g.C, g);
  if (threadIdx.x < kTile) {
    row_m[threadIdx.x] = -INFINITY;
    row_l[threadIdx.x] = 0.0f;
  }
  float acc[kAccPerThread];
#pragma unroll
  for (int r = 0; r < kAccPerThread; ++r) acc[r] = 0.0f;

  for (int k0 = 0; k0 <= q0; k0 += kTile) {  // key tiles up to and including the diagonal one
    load_kv(ks, vs, inp, b, k0, g);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kScoresPerThread; ++r) {
      const int qi = warp + kWarps * r, kj = lane;
      const int qg = q0 + qi, kg = k0 + kj;
      const bool live = kg <= qg && qg < g.T;
      sc[qi * kScoreLd + kj] = live ? dot_rows(qs + qi * ld, ks + kj * ld, g.HS) * g.scale : -INFINITY;
    }
    __syncthreads();
    // Online softmax, one warp per row (rows warp, warp + 8, ...), lane = key.
#pragma unroll
    for (int r = 0; r < kScoresPerThread; ++r) {
      const int qi = warp + kWarps * r;
      const float s = sc[qi * kScoreLd + lane];
      const float m_old = row_m[qi];
      const float m_new = fmaxf(m_old, warp_max(s));
      // A row with no live key so far (padding rows only) keeps m = -inf: avoid inf - inf.
      const float p = m_new == -INFINITY ? 0.0f : expf(s - m_new);
      const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
      const float psum = warp_sum(p);
      sc[qi * kScoreLd + lane] = p;
      __syncwarp();
      if (lane == 0) {
        row_m[qi] = m_new;
        row_l[qi] = row_l[qi] * alpha + psum;
        row_alpha[qi] = alpha;
      }
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kAccPerThread; ++r) {
      const int e = threadIdx.x + kThreads * r;
      if (e < kTile * g.HS) {
        const int qi = e / g.HS, d = e % g.HS;
        float s = 0.0f;
        for (int kj = 0; kj < kTile; ++kj) s += sc[qi * kScoreLd + kj] * vs[kj * ld + d];
        acc[r] = acc[r] * row_alpha[qi] + s;
      }
    }
    __syncthreads();  // k, v and scores are overwritten by the next tile
  }
#pragma unroll
  for (int r = 0; r < kAccPerThread; ++r) {
    const int e = threadIdx.x + kThreads * r;
    if (e < kTile * g.HS) {
      const int qi = e / g.HS, d = e % g.HS;
      const int qg = q0 + qi;
      if (qg < g.T) out[(size_t(b) * g.T + qg) * g.C + size_t(h) * g.HS + d] = acc[r] / row_l[qi];
    }
  }
  if (threadIdx.x < kTile && q0 + int(threadIdx.x) < g.T) {
    lse[(size_t(b) * g.NH + h) * g.T + q0 + threadIdx.x] = row_m[threadIdx.x] + logf(row_l[threadIdx.x]);
  }
}

// D (B, NH, T) = rowsum(dout ⊙ out) per head: one warp per (b, t, h).
static __global__ void attention_backward_d_kernel(float* D, const float* dout, const float* out, int B, Dims g) {
  const size_t row = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= size_t(B) * g.T * g.NH) return;
  const int h = int(row % g.NH);
  const size_t bt = row / g.NH;
  const float* x = dout + bt * g.C + size_t(h) * g.HS;
  const float* y = out + bt * g.C + size_t(h) * g.HS;
  float s = 0.0f;
  for (int d = lane; d < g.HS; d += 32) s += x[d] * y[d];
  s = warp_sum(s);
  const size_t b = bt / g.T, t = bt % g.T;
  if (lane == 0) D[(b * g.NH + h) * g.T + t] = s;
}

// Calls f(r, row, d) for the thread's accumulator entries of a (32, HS) tile:
// e = tid + 256 r, row = e / HS, d = e % HS. r is unrolled, so per-thread arrays
// indexed by r stay in registers.
template <typename F>
__device__ __forceinline__ void for_each_acc(const Dims& g, F&& f) {
#pragma unroll
  for (int r = 0; r < kAccPerThread; ++r) {
    const int e = threadIdx.x + kThreads * r;
    if (e < kTile * g.HS) f(r, e / g.HS, e % g.HS);
  }
}

// Shared memory of the backward kernels: k, v, q, dout tiles (32, HS+1) each, the
// p tile (32, 33; dkdv only), the ds tile (32, 33), and lse and D of 32 query rows.
struct BackwardSmem {
  float *ks, *vs, *qs, *dos, *pt, *dst, *lse_s, *d_s;
};

__device__ BackwardSmem backward_smem(float* smem, bool with_p, const Dims& g) {
  const int ld = g.HS + 1;
  BackwardSmem s;
  s.ks = smem;
  s.vs = s.ks + kTile * ld;
  s.qs = s.vs + kTile * ld;
  s.dos = s.qs + kTile * ld;
  s.pt = with_p ? s.dos + kTile * ld : nullptr;
  s.dst = with_p ? s.pt + kTile * kScoreLd : s.dos + kTile * ld;
  s.lse_s = s.dst + kTile * kScoreLd;
  s.d_s = s.lse_s + kTile;
  return s;
}

// Loads the q and dout tiles and lse and D of query rows [q0, q0 + 32) of head
// (b, h); stats of rows >= T are 0 (never live).
__device__ void load_query_rows(const BackwardSmem& s, const float* inp, const float* dout, const float* lse,
                                const float* D, int b, int q0, const Dims& g) {
  load_tile(s.qs, inp, b, q0, 0, 3 * g.C, g);
  load_tile(s.dos, dout, b, q0, 0, g.C, g);
  if (threadIdx.x < kTile) {
    const int t = q0 + threadIdx.x;
    const size_t i = (size_t(b) * g.NH + blockIdx.y) * g.T + t;
    s.lse_s[threadIdx.x] = t < g.T ? lse[i] : 0.0f;
    s.d_s[threadIdx.x] = t < g.T ? D[i] : 0.0f;
  }
}

// Recomputes the live probabilities p and score gradients ds = p (dp - D) of one
// 32 x 32 tile into s.pt (when not null) and s.dst.
__device__ void score_grad_tile(const BackwardSmem& s, int q0, int k0, const Dims& g) {
  const int ld = g.HS + 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kScoresPerThread; ++r) {
    const int qi = warp + kWarps * r, kj = lane;
    const int qg = q0 + qi, kg = k0 + kj;
    float p = 0.0f, ds = 0.0f;
    if (kg <= qg && qg < g.T) {
      p = expf(dot_rows(s.qs + qi * ld, s.ks + kj * ld, g.HS) * g.scale - s.lse_s[qi]);
      ds = p * (dot_rows(s.dos + qi * ld, s.vs + kj * ld, g.HS) - s.d_s[qi]);
    }
    if (s.pt) s.pt[qi * kScoreLd + kj] = p;
    s.dst[qi * kScoreLd + kj] = ds;
  }
}

// grid (ceil(T / 32), NH, B), block per key tile. dk = scale · Σ_q ds q,
// dv = Σ_q p dout, over query tiles in order.
static __global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_kernel(float* dinp, const float* dout, const float* inp, const float* lse,
                                   const float* D, Dims g) {
  extern __shared__ float smem[];
  const BackwardSmem s = backward_smem(smem, /*with_p=*/true, g);
  const int ld = g.HS + 1;
  const int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * kTile;
  const int C3 = 3 * g.C;
  load_kv(s.ks, s.vs, inp, b, k0, g);
  float dk[kAccPerThread], dv[kAccPerThread];
#pragma unroll
  for (int r = 0; r < kAccPerThread; ++r) dk[r] = dv[r] = 0.0f;

  for (int q0 = k0; q0 < g.T; q0 += kTile) {  // query tiles at or below the diagonal
    load_query_rows(s, inp, dout, lse, D, b, q0, g);
    __syncthreads();
    score_grad_tile(s, q0, k0, g);
    __syncthreads();
    for_each_acc(g, [&](int r, int kj, int d) {
      float sk = 0.0f, sv = 0.0f;
      for (int qi = 0; qi < kTile; ++qi) {
        sk += s.dst[qi * kScoreLd + kj] * s.qs[qi * ld + d];
        sv += s.pt[qi * kScoreLd + kj] * s.dos[qi * ld + d];
      }
      dk[r] += sk;
      dv[r] += sv;
    });
    __syncthreads();
  }
  for_each_acc(g, [&](int r, int kj, int d) {
    const int kg = k0 + kj;
    if (kg < g.T) {
      float* row = dinp + (size_t(b) * g.T + kg) * C3 + size_t(h) * g.HS + d;
      row[g.C] = dk[r] * g.scale;
      row[2 * g.C] = dv[r];
    }
  });
}

// grid (ceil(T / 32), NH, B), block per query tile: dq = scale · Σ_k ds k over key
// tiles in order.
static __global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(float* dinp, const float* dout, const float* inp, const float* lse,
                                 const float* D, Dims g) {
  extern __shared__ float smem[];
  const BackwardSmem s = backward_smem(smem, /*with_p=*/false, g);
  const int q0 = blockIdx.x * kTile;
  load_query_rows(s, inp, dout, lse, D, blockIdx.z, q0, g);
  float dq[kAccPerThread];
#pragma unroll
  for (int r = 0; r < kAccPerThread; ++r) dq[r] = 0.0f;

  for (int k0 = 0; k0 <= q0; k0 += kTile) {
    load_kv(s.ks, s.vs, inp, blockIdx.z, k0, g);
    __syncthreads();
    score_grad_tile(s, q0, k0, g);
    __syncthreads();
    for_each_acc(g, [&](int r, int qi, int d) {
      float sum = 0.0f;
      for (int kj = 0; kj < kTile; ++kj) sum += s.dst[qi * kScoreLd + kj] * s.ks[kj * (g.HS + 1) + d];
      dq[r] += sum;
    });
    __syncthreads();
  }
  for_each_acc(g, [&](int r, int qi, int d) {
    const int qg = q0 + qi;
    if (qg < g.T) dinp[(size_t(blockIdx.z) * g.T + qg) * 3 * g.C + size_t(blockIdx.y) * g.HS + d] = dq[r] * g.scale;
  });
}

Dims make_dims(int T, int C, int NH) {
  PT_CHECK_MSG(NH > 0 && C % NH == 0, "attention: C must be a multiple of NH");
  const int HS = C / NH;
  PT_CHECK_MSG(HS >= 1 && HS <= kAttentionMaxHeadSize, "attention: head size must be in [1, 128]");
  return Dims{T, C, NH, HS, 1.0f / std::sqrt(float(HS))};
}

// Dynamic shared memory above 48 KB must be opted into per kernel.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    PT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                       cudaStream_t stream) {
  const Dims g = make_dims(T, C, NH);
  if (B == 0 || T == 0) return;
  const size_t ld = g.HS + 1;
  const size_t smem = (3 * kTile * ld + kTile * kScoreLd + 3 * kTile) * sizeof(float);
  allow_smem(attention_forward_kernel, smem);
  const dim3 grid(detail::ceil_div(T, kTile), NH, B);
  attention_forward_kernel<<<grid, kThreads, smem, stream>>>(out, lse, inp, g);
  PT_CUDA_CHECK_LAUNCH();
}

void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* out,
                        const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
  const Dims g = make_dims(T, C, NH);
  if (B == 0 || T == 0) return;
  float* D = scratch;  // (B, NH, T)
  const size_t rows = size_t(B) * T * NH;
  attention_backward_d_kernel<<<detail::ceil_div(rows * 32, 256), 256, 0, stream>>>(D, dout, out, B, g);
  PT_CUDA_CHECK_LAUNCH();
  const size_t ld = g.HS + 1;
  const dim3 grid(detail::ceil_div(T, kTile), NH, B);
  const size_t smem_kv = (4 * kTile * ld + 2 * kTile * kScoreLd + 2 * kTile) * sizeof(float);
  allow_smem(attention_backward_dkdv_kernel, smem_kv);
  attention_backward_dkdv_kernel<<<grid, kThreads, smem_kv, stream>>>(dinp, dout, inp, lse, D, g);
  PT_CUDA_CHECK_LAUNCH();
  const size_t smem_q = (4 * kTile * ld + kTile * kScoreLd + 2 * kTile) * sizeof(float);
  allow_smem(attention_backward_dq_kernel, smem_q);
  attention_backward_dq_kernel<<<grid, kThreads, smem_q, stream>>>(dinp, dout, inp, lse, D, g);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
