// Softmax + cross-entropy on the GPU; see crossentropy.h.
// One block of kThreads per row: each thread keeps a running (max m, sum s of
// exp(x - m)) over its elements (online softmax: when m grows, s is rescaled by
// exp(m_old - m_new)); the block then merges the pairs in a fixed tree, so the row's
// (m, s) has the same bits on every run and in both ops. A thread's elements: when
// V % kVec == 0, runs of kVec consecutive ones, [kVec·(t + kThreads·i), + kVec), read
// with 16-byte loads where the row is 16-byte aligned (bf16 logits: 8 per load, a
// warp reads 512 contiguous bytes instead of 64) and element by element otherwise, in
// the same order either way; else every kThreads-th element from t. The mapping
// depends only on V, so the bf16 and fp32 instances give the same bits on the same
// values.
// loss = log(s) - (x_t - m) as in the CPU twin (finite even when the target
// probability underflows). In-place safety (backward): each thread overwrites
// only the elements it read itself, after the block's reduction.
// Element types: float or __nv_bfloat16 for logits and dlogits (the typed forms):
// loads widened, the fp32 arithmetic below, each dlogits store rounded once (RNE);
// the float instances are the kernels of the fp32 forms.
#include "model/cuda/crossentropy.h"

#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/typed_dispatch.cuh"

namespace pt::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // consecutive elements per thread and step (V % kVec == 0)

// x[0, kVec) widened into e: 16-byte loads when x is 16-byte aligned.
__device__ inline void load_run(const float* x, float (&e)[kVec]) {
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    const float4 a = reinterpret_cast<const float4*>(x)[0], b = reinterpret_cast<const float4*>(x)[1];
    e[0] = a.x, e[1] = a.y, e[2] = a.z, e[3] = a.w, e[4] = b.x, e[5] = b.y, e[6] = b.z, e[7] = b.w;
  } else {
    for (int j = 0; j < kVec; ++j) e[j] = x[j];
  }
}
__device__ inline void load_run(const __nv_bfloat16* x, float (&e)[kVec]) {
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    const uint4 u = reinterpret_cast<const uint4*>(x)[0];
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
    for (int j = 0; j < kVec / 2; ++j) {
      const float2 f = __bfloat1622float2(h[j]);
      e[2 * j] = f.x, e[2 * j + 1] = f.y;
    }
  } else {
    for (int j = 0; j < kVec; ++j) e[j] = __bfloat162float(x[j]);
  }
}
// e stored into d[0, kVec), each rounded once (bf16: nearest even); 16-byte stores when aligned.
__device__ inline void store_run(float* d, const float (&e)[kVec]) {
  if (reinterpret_cast<uintptr_t>(d) % 16 == 0) {
    reinterpret_cast<float4*>(d)[0] = make_float4(e[0], e[1], e[2], e[3]);
    reinterpret_cast<float4*>(d)[1] = make_float4(e[4], e[5], e[6], e[7]);
  } else {
    for (int j = 0; j < kVec; ++j) d[j] = e[j];
  }
}
__device__ inline void store_run(__nv_bfloat16* d, const float (&e)[kVec]) {
  if (reinterpret_cast<uintptr_t>(d) % 16 == 0) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
    for (int j = 0; j < kVec / 2; ++j) h[j] = __floats2bfloat162_rn(e[2 * j], e[2 * j + 1]);
    reinterpret_cast<uint4*>(d)[0] = u;
  } else {
    for (int j = 0; j < kVec; ++j) d[j] = __float2bfloat16_rn(e[j]);
  }
}

// One online-softmax step: element xv into the thread's running (m, s).
__device__ inline void accumulate(float xv, float& m, float& s) {
  if (xv > m) {
    s = s * expf(m - xv) + 1.0f;  // exp(-inf) = 0 on the first element
    m = xv;
  } else {
    s += expf(xv - m);
  }
}

// Merge (m_b, s_b) into (m_a, s_a). -inf maxima come only from empty partitions
// (threads past the row end), whose sum is 0: skip them to avoid inf - inf.
__device__ inline void merge(float& m_a, float& s_a, float m_b, float s_b) {
  if (m_b == -INFINITY) return;
  if (m_a == -INFINITY) {
    m_a = m_b;
    s_a = s_b;
    return;
  }
  const float m = fmaxf(m_a, m_b);
  s_a = s_a * expf(m_a - m) + s_b * expf(m_b - m);
  m_a = m;
}

// The row's (max, sum of exp(x - max)) into *row_max, *row_sum, for every thread
// of the block. x: one row of V logits.
template <typename TX>
__device__ void row_softmax_stats(const TX* x, int V, float* row_max, float* row_sum) {
  __shared__ float sh_m[kThreads];
  __shared__ float sh_s[kThreads];
  float m = -INFINITY, s = 0.0f;
  if (V % kVec == 0) {
    for (int v = threadIdx.x * kVec; v < V; v += kThreads * kVec) {
      float e[kVec];
      load_run(x + v, e);
      for (int j = 0; j < kVec; ++j) accumulate(e[j], m, s);
    }
  } else {
    for (int v = threadIdx.x; v < V; v += kThreads) accumulate(detail::to_float(x[v]), m, s);
  }
  sh_m[threadIdx.x] = m;
  sh_s[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      float ma = sh_m[threadIdx.x], sa = sh_s[threadIdx.x];
      merge(ma, sa, sh_m[threadIdx.x + stride], sh_s[threadIdx.x + stride]);
      sh_m[threadIdx.x] = ma;
      sh_s[threadIdx.x] = sa;
    }
    __syncthreads();
  }
  *row_max = sh_m[0];
  *row_sum = sh_s[0];
}

template <typename TX>
static __global__ void __launch_bounds__(kThreads)
    crossentropy_forward_kernel(float* losses, const TX* logits, const int32_t* targets, int V, float* stats) {
  const size_t row = blockIdx.x;
  const TX* x = logits + row * V;
  float m, s;
  row_softmax_stats(x, V, &m, &s);
  if (threadIdx.x == 0) {
    const int target = targets[row];
    const float xt = (target >= 0 && target < V) ? detail::to_float(x[target]) : NAN;
    losses[row] = logf(s) - (xt - m);
    if (stats != nullptr) stats[2 * row] = m, stats[2 * row + 1] = s;
  }
}

template <typename TD, typename TX>
static __global__ void __launch_bounds__(kThreads)
    crossentropy_backward_kernel(TD* dlogits, const TX* logits, const int32_t* targets, float scale, int V,
                                 const float* stats) {
  const size_t row = blockIdx.x;
  const TX* x = logits + row * V;
  TD* d = dlogits + row * V;
  float m, s;
  if (stats != nullptr) {  // the forward's: the bits of the pass below, without reading x
    m = stats[2 * row];
    s = stats[2 * row + 1];
  } else {
    row_softmax_stats(x, V, &m, &s);  // ends with a barrier: every read of the pass is done
  }
  const float inv = 1.0f / s;
  const int target = targets[row];
  // __fmul_rn keeps each product a separate rounding (no FMA with the subtraction), as
  // in the CPU twin. Same element mapping as row_softmax_stats (in-place safety).
  auto grad = [&](int v, float xv) {
    const float g = __fmul_rn(__fmul_rn(expf(xv - m), inv), scale);
    return v == target ? g - scale : g;
  };
  if (V % kVec == 0) {
    for (int v = threadIdx.x * kVec; v < V; v += kThreads * kVec) {
      float e[kVec];
      load_run(x + v, e);
      for (int j = 0; j < kVec; ++j) e[j] = grad(v + j, e[j]);
      store_run(d + v, e);
    }
  } else {
    for (int v = threadIdx.x; v < V; v += kThreads) detail::store_float(d + v, grad(v, detail::to_float(x[v])));
  }
}

}  // namespace

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, float* stats,
                          cudaStream_t stream) {
  if (N <= 0) return;
  crossentropy_forward_kernel<<<N, kThreads, 0, stream>>>(losses, logits, targets, V, stats);
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                           const float* stats, cudaStream_t stream) {
  if (N <= 0) return;
  crossentropy_backward_kernel<<<N, kThreads, 0, stream>>>(dlogits, logits, targets, scale, V, stats);
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_forward_typed(float* losses, const void* logits, bool logits_bf16, const int32_t* targets, int N,
                                int V, float* stats, cudaStream_t stream) {
  if (N <= 0) return;
  detail::with_type(logits, logits_bf16, [&](auto* x) {
    crossentropy_forward_kernel<<<N, kThreads, 0, stream>>>(losses, x, targets, V, stats);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_backward_typed(void* dlogits, bool dlogits_bf16, const void* logits, bool logits_bf16,
                                 const int32_t* targets, float scale, int N, int V, const float* stats,
                                 cudaStream_t stream) {
  if (N <= 0) return;
  // In place needs one element type: each thread then rewrites exactly the bytes it read.
  PT_CHECK_MSG(dlogits != logits || dlogits_bf16 == logits_bf16,
               "crossentropy_backward_typed: dlogits aliases logits with another element type");
  detail::with_type(dlogits, dlogits_bf16, [&](auto* d) {
    detail::with_type(logits, logits_bf16, [&](auto* x) {
      crossentropy_backward_kernel<<<N, kThreads, 0, stream>>>(d, x, targets, scale, V, stats);
    });
  });
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
