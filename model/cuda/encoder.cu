// Token + position embedding on the GPU; see encoder.h.
// Backward, deterministic by construction (five small kernels):
//   1. count[v]   = occurrences of token v            (integer atomics: exact)
//   2. offset[v]  = exclusive prefix sum of count      (one block, fixed order)
//   3. bucket     = positions grouped by token         (slot order within a bucket
//                                                        is arbitrary here ...)
//   4. sorted     = each bucket in ascending position  (... and made unique here:
//                   rank of a position = number of smaller positions in its bucket)
//   5. dwte[v, c] = dwte[v, c] + dout[p0, c] + dout[p1, c] + ...  over sorted p,
//      one block per vocabulary row; dwpe[t, c] += dout[0, t, c] + dout[1, t, c] ...
// Step 4 costs sum(count²) comparisons; with GPT-2 text at B·T = 32K the largest
// bucket is a few thousand, so this is small next to the matmuls.
#include "model/cuda/encoder.h"

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "model/cuda/typed_dispatch.cuh"

namespace pt::cuda {
namespace {

using detail::ceil_div;

// TO, TD (out, dout): float or __nv_bfloat16 (the typed forms); fp32 arithmetic.
template <typename TO>
static __global__ void encoder_forward_kernel(TO* out, const int32_t* inp, const float* wte, const float* wpe,
                                              int BT, int T, int C) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(BT) * C) return;
  const size_t bt = i / C;
  const int c = int(i % C);
  const int t = int(bt % T);
  detail::store_float(out + i, wte[size_t(inp[bt]) * C + c] + wpe[size_t(t) * C + c]);
}

static __global__ void encoder_count_kernel(int32_t* count, const int32_t* inp, int BT, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BT) return;
  const int v = inp[i];
  if (v >= 0 && v < V) atomicAdd(&count[v], 1);
}

// One block of 1024 threads; the scan walks V in chunks, each chunk a
// Hillis-Steele scan in shared memory. Integer sums: exact in any order.
constexpr int kScanThreads = 1024;
static __global__ void encoder_scan_kernel(int32_t* offset, const int32_t* count, int V) {
  __shared__ int32_t buf[kScanThreads];
  __shared__ int32_t carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < V; base += kScanThreads) {
    const int i = base + threadIdx.x;
    const int32_t x = i < V ? count[i] : 0;
    buf[threadIdx.x] = x;
    __syncthreads();
    for (int o = 1; o < kScanThreads; o <<= 1) {
      const int32_t add = threadIdx.x >= o ? buf[threadIdx.x - o] : 0;
      __syncthreads();
      buf[threadIdx.x] += add;
      __syncthreads();
    }
    if (i < V) offset[i] = carry + buf[threadIdx.x] - x;  // exclusive
    __syncthreads();
    if (threadIdx.x == kScanThreads - 1) carry += buf[threadIdx.x];
    __syncthreads();
  }
}

static __global__ void encoder_bucket_kernel(int32_t* bucket, int32_t* cursor, const int32_t* offset,
                                             const int32_t* inp, int BT, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BT) return;
  const int v = inp[i];
  if (v < 0 || v >= V) return;
  bucket[offset[v] + atomicAdd(&cursor[v], 1)] = i;
}

// Positions are distinct, so the sorted order is unique whatever order step 3 left.
static __global__ void encoder_sort_kernel(int32_t* sorted, const int32_t* bucket, const int32_t* offset,
                                           const int32_t* count, const int32_t* inp, int BT, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BT) return;
  const int v = inp[i];
  if (v < 0 || v >= V) return;
  const int32_t* b = bucket + offset[v];
  int rank = 0;
  for (int j = 0; j < count[v]; ++j) rank += b[j] < i ? 1 : 0;
  sorted[offset[v] + rank] = i;
}

// grid (V, ceil(C / blockDim)): block per vocabulary row, thread per channel.
template <typename TD>
static __global__ void encoder_wte_kernel(float* dwte, const TD* dout, const int32_t* sorted,
                                          const int32_t* offset, const int32_t* count, int C) {
  const int v = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  const int n = count[v];
  if (c >= C || n == 0) return;
  const int32_t* pos = sorted + offset[v];
  float acc = dwte[size_t(v) * C + c];
  for (int j = 0; j < n; ++j) acc += detail::to_float(dout[size_t(pos[j]) * C + c]);
  dwte[size_t(v) * C + c] = acc;
}

template <typename TD>
static __global__ void encoder_wpe_kernel(float* dwpe, const TD* dout, int B, int T, int C) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(T) * C) return;
  float acc = dwpe[i];
  for (int b = 0; b < B; ++b) acc += detail::to_float(dout[size_t(b) * T * C + i]);
  dwpe[i] = acc;
}

}  // namespace

void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C,
                     cudaStream_t stream) {
  encoder_forward_typed(out, false, inp, wte, wpe, B, T, C, stream);
}

void encoder_forward_typed(void* out, bool out_bf16, const int32_t* inp, const float* wte, const float* wpe, int B,
                           int T, int C, cudaStream_t stream) {
  const size_t n = size_t(B) * T * C;
  if (n == 0) return;
  detail::with_type(out, out_bf16, [&](auto* o) {
    encoder_forward_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(o, inp, wte, wpe, B * T, T, C);
  });
  PT_CUDA_CHECK_LAUNCH();
}

size_t encoder_backward_workspace_ints(int B, int T, int V) { return 3 * size_t(V) + 2 * size_t(B) * T + 1; }

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C, int V,
                      int32_t* workspace, cudaStream_t stream) {
  encoder_backward_typed(dwte, dwpe, dout, false, inp, B, T, C, V, workspace, stream);
}

void encoder_backward_typed(float* dwte, float* dwpe, const void* dout, bool dout_bf16, const int32_t* inp, int B,
                            int T, int C, int V, int32_t* workspace, cudaStream_t stream) {
  const int BT = B * T;
  if (BT == 0 || C == 0) return;
  int32_t* count = workspace;    // (V)
  int32_t* cursor = count + V;   // (V)
  int32_t* offset = cursor + V;  // (V)
  int32_t* bucket = offset + V;  // (BT)
  int32_t* sorted = bucket + BT; // (BT)
  PT_CUDA_CHECK(cudaMemsetAsync(count, 0, 2 * size_t(V) * sizeof(int32_t), stream));  // count and cursor
  const unsigned int pos_blocks = ceil_div(BT, 256);
  encoder_count_kernel<<<pos_blocks, 256, 0, stream>>>(count, inp, BT, V);
  PT_CUDA_CHECK_LAUNCH();
  encoder_scan_kernel<<<1, kScanThreads, 0, stream>>>(offset, count, V);
  PT_CUDA_CHECK_LAUNCH();
  encoder_bucket_kernel<<<pos_blocks, 256, 0, stream>>>(bucket, cursor, offset, inp, BT, V);
  PT_CUDA_CHECK_LAUNCH();
  encoder_sort_kernel<<<pos_blocks, 256, 0, stream>>>(sorted, bucket, offset, count, inp, BT, V);
  PT_CUDA_CHECK_LAUNCH();
  const int threads = C < 256 ? ((C + 31) / 32) * 32 : 256;
  detail::with_type(dout, dout_bf16, [&](auto* dy) {
    encoder_wte_kernel<<<dim3(V, ceil_div(C, threads)), threads, 0, stream>>>(dwte, dy, sorted, offset, count, C);
    PT_CUDA_CHECK_LAUNCH();
    encoder_wpe_kernel<<<ceil_div(size_t(T) * C, 256), 256, 0, stream>>>(dwpe, dy, B, T, C);
    PT_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pt::cuda
