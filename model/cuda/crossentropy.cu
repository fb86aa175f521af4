// Softmax + cross-entropy on the GPU; see crossentropy.h.
// One block of kThreads per row: each thread keeps a running (max m, sum s of
// exp(x - m)) over its strided elements (online softmax: when m grows, s is
// rescaled by exp(m_old - m_new)); the block then merges the pairs in a fixed
// tree, so the row's (m, s) has the same bits on every run and in both ops.
// loss = log(s) - (x_t - m) as in the CPU twin (finite even when the target
// probability underflows). In-place safety (backward): each thread overwrites
// only the elements it read itself, after the block's reduction.
// Element types: float or __nv_bfloat16 for logits and dlogits (the typed forms):
// loads widened, the fp32 arithmetic below, each dlogits store rounded once (RNE);
// the float instances are the kernels of the fp32 forms.
#include "model/cuda/crossentropy.h"

#include <cmath>

#include "common/check.h"
#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/typed_dispatch.cuh"

namespace pt::cuda {
namespace {

constexpr int kThreads = 256;

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
  for (int v = threadIdx.x; v < V; v += kThreads) {
    const float xv = detail::to_float(x[v]);
    if (xv > m) {
      s = s * expf(m - xv) + 1.0f;  // exp(-inf) = 0 on the first element
      m = xv;
    } else {
      s += expf(xv - m);
    }
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
    crossentropy_forward_kernel(float* losses, const TX* logits, const int32_t* targets, int V) {
  const size_t row = blockIdx.x;
  const TX* x = logits + row * V;
  float m, s;
  row_softmax_stats(x, V, &m, &s);
  if (threadIdx.x == 0) {
    const int target = targets[row];
    const float xt = (target >= 0 && target < V) ? detail::to_float(x[target]) : NAN;
    losses[row] = logf(s) - (xt - m);
  }
}

template <typename TD, typename TX>
static __global__ void __launch_bounds__(kThreads)
    crossentropy_backward_kernel(TD* dlogits, const TX* logits, const int32_t* targets, float scale, int V) {
  const size_t row = blockIdx.x;
  const TX* x = logits + row * V;
  TD* d = dlogits + row * V;
  float m, s;
  row_softmax_stats(x, V, &m, &s);  // ends with a barrier: every read of the pass is done
  const float inv = 1.0f / s;
  const int target = targets[row];
  for (int v = threadIdx.x; v < V; v += kThreads) {
    // __fmul_rn keeps each product a separate rounding (no FMA with the
    // subtraction), as in the CPU twin.
    float g = __fmul_rn(__fmul_rn(expf(detail::to_float(x[v]) - m), inv), scale);
    if (v == target) g = g - scale;
    detail::store_float(d + v, g);
  }
}

}  // namespace

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V,
                          cudaStream_t stream) {
  if (N <= 0) return;
  crossentropy_forward_kernel<<<N, kThreads, 0, stream>>>(losses, logits, targets, V);
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                           cudaStream_t stream) {
  if (N <= 0) return;
  crossentropy_backward_kernel<<<N, kThreads, 0, stream>>>(dlogits, logits, targets, scale, V);
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_forward_typed(float* losses, const void* logits, bool logits_bf16, const int32_t* targets, int N,
                                int V, cudaStream_t stream) {
  if (N <= 0) return;
  detail::with_type(logits, logits_bf16, [&](auto* x) {
    crossentropy_forward_kernel<<<N, kThreads, 0, stream>>>(losses, x, targets, V);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_backward_typed(void* dlogits, bool dlogits_bf16, const void* logits, bool logits_bf16,
                                 const int32_t* targets, float scale, int N, int V, cudaStream_t stream) {
  if (N <= 0) return;
  // In place needs one element type: each thread then rewrites exactly the bytes it read.
  PT_CHECK_MSG(dlogits != logits || dlogits_bf16 == logits_bf16,
               "crossentropy_backward_typed: dlogits aliases logits with another element type");
  detail::with_type(dlogits, dlogits_bf16, [&](auto* d) {
    detail::with_type(logits, logits_bf16, [&](auto* x) {
      crossentropy_backward_kernel<<<N, kThreads, 0, stream>>>(d, x, targets, scale, V);
    });
  });
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
