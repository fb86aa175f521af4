// Softmax + cross-entropy on the GPU; see crossentropy.h.
// Forward, one block of kThreads per row: each thread keeps a running (max m,
// sum s of exp(x - m)) over its strided elements (online softmax: when m grows,
// s is rescaled by exp(m_old - m_new)); the block then merges the pairs in a fixed
// tree, so the row's (m, s) has the same bits on every run. loss = log(s) - (x_t - m)
// as in the CPU twin (finite even when the target probability underflows).
// In-place safety: the target logit is read before the block's first barrier and
// each thread later overwrites only the elements it read itself.
#include "model/cuda/crossentropy.h"

#include <cmath>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

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

static __global__ void __launch_bounds__(kThreads)
    crossentropy_forward_kernel(float* losses, float* probs, const float* logits, const int32_t* targets, int V) {
  __shared__ float sh_m[kThreads];
  __shared__ float sh_s[kThreads];
  __shared__ float sh_target;
  const size_t row = blockIdx.x;
  const float* x = logits + row * V;
  float* p = probs + row * V;
  const int target = targets[row];
  if (threadIdx.x == 0) sh_target = (target >= 0 && target < V) ? x[target] : NAN;
  float m = -INFINITY, s = 0.0f;
  for (int v = threadIdx.x; v < V; v += kThreads) {
    const float xv = x[v];
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
  const float row_max = sh_m[0];
  const float row_sum = sh_s[0];
  if (threadIdx.x == 0) losses[row] = logf(row_sum) - (sh_target - row_max);
  const float inv = 1.0f / row_sum;
  for (int v = threadIdx.x; v < V; v += kThreads) p[v] = expf(x[v] - row_max) * inv;
}

static __global__ void crossentropy_softmax_backward_kernel(float* dlogits, const float* probs,
                                                            const int32_t* targets, float scale, int V,
                                                            size_t total) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const size_t row = i / V;
  const int v = int(i % V);
  // __fmul_rn keeps the product a separate rounding (no FMA with the subtraction),
  // as in the CPU twin's d = p * scale; d[target] -= scale.
  float d = __fmul_rn(probs[i], scale);
  if (v == targets[row]) d = d - scale;
  dlogits[i] = d;
}

}  // namespace

void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int B, int T,
                          int V, cudaStream_t stream) {
  const int rows = B * T;
  if (rows == 0) return;
  crossentropy_forward_kernel<<<rows, kThreads, 0, stream>>>(losses, probs, logits, targets, V);
  PT_CUDA_CHECK_LAUNCH();
}

void crossentropy_softmax_backward(float* dlogits, const float* probs, const int32_t* targets, float scale, int B,
                                   int T, int V, cudaStream_t stream) {
  const size_t total = size_t(B) * T * V;
  if (total == 0) return;
  crossentropy_softmax_backward_kernel<<<detail::ceil_div(total, 256), 256, 0, stream>>>(dlogits, probs, targets,
                                                                                         scale, V, total);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
