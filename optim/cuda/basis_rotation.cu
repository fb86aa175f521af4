// The GPU twin of rotated_adam_update; see basis_rotation.h (this folder) and the
// CPU twin in optim/basis_rotation.cc, whose structure this file follows.
#include "optim/cuda/basis_rotation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"
#include "optim/cuda/linalg.h"

namespace pt::cuda {
namespace {

constexpr int kThreads = 256;

unsigned int blocks_for(size_t n) { return std::max(1u, std::min(4096u, detail::ceil_div(n, kThreads))); }

#define PT_GRID_STRIDE(i, n) for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += size_t(gridDim.x) * blockDim.x)

__global__ void scale_kernel(float* out, const float* in, float scale, size_t n) {
  PT_GRID_STRIDE(i, n) out[i] = in[i] * scale;
}

// out = beta·x + (1−beta)·g
__global__ void ema_kernel(float* out, const float* x, const float* g, float beta, size_t n) {
  PT_GRID_STRIDE(i, n) out[i] = beta * x[i] + (1.0f - beta) * g[i];
}

// v = b2·v + (1−b2)·g̃² ; mt <- (mt/bc1) / (sqrt(v/bc2) + eps)
__global__ void rotated_adam_kernel(float* mt, const float* gt, float* v, float b2, float bc1, float bc2, float eps,
                                    size_t n) {
  PT_GRID_STRIDE(i, n) {
    const float vi = b2 * v[i] + (1.0f - b2) * gt[i] * gt[i];
    v[i] = vi;
    const float mhat = mt[i] / bc1;
    const float vhat = vi / bc2;
    mt[i] = mhat / (sqrtf(vhat) + eps);
  }
}

__global__ void apply_kernel(float* w, const float* d, float lr, float wd, size_t n) {
  PT_GRID_STRIDE(i, n) w[i] -= lr * (d[i] + wd * w[i]);
}

__global__ void any_nonzero_kernel(const float* x, size_t n, int* flag) {
  PT_GRID_STRIDE(i, n) if (x[i] != 0.0f) atomicOr(flag, 1);
}

// lambda_j = Σ_i q[i][j]·xq[i][j] (double), one thread per column.
__global__ void rayleigh_kernel(const float* q, const float* xq, int d, double* lambda) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double s = 0.0;
  for (int i = 0; i < d; ++i) s += double(q[size_t(i) * d + j]) * xq[size_t(i) * d + j];
  lambda[j] = s;
}

// out[i][j] = in[rows ? perm[i] : i][rows ? j : perm[j]]  (r×c)
__global__ void permute_kernel(const float* in, float* out, const int* perm, int r, int c, bool rows) {
  PT_GRID_STRIDE(e, size_t(r) * c) {
    const int i = int(e / c), j = int(e % c);
    out[e] = rows ? in[size_t(perm[i]) * c + j] : in[size_t(i) * c + perm[j]];
  }
}

// Device scratch freed at scope exit (stream-ordered).
template <class T> struct Buffer {
  T* p = nullptr;
  cudaStream_t s;
  Buffer(size_t n, cudaStream_t stream) : s(stream) { PT_CUDA_CHECK(cudaMallocAsync(&p, std::max<size_t>(n, 1) * sizeof(T), s)); }
  ~Buffer() { cudaFreeAsync(p, s); }
};

bool all_zero(const float* x, size_t n, cudaStream_t stream) {
  Buffer<int> flag(1, stream);
  PT_CUDA_CHECK(cudaMemsetAsync(flag.p, 0, sizeof(int), stream));
  any_nonzero_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, flag.p);
  PT_CUDA_CHECK_LAUNCH();
  int h = 0;
  PT_CUDA_CHECK(cudaMemcpyAsync(&h, flag.p, sizeof(int), cudaMemcpyDeviceToHost, stream));
  PT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return h == 0;
}

void change_basis(const RotatedMatrix& s, int r, int c, bool forward, const float* X, float* out, float* tmp,
                  cudaStream_t stream) {
  const float* src = X;
  if (s.q_left) {
    gemm(forward, false, r, c, r, 1.0f, s.q_left, src, 0.0f, tmp, stream);
    src = tmp;
  }
  if (s.q_right) gemm(false, !forward, r, c, c, 1.0f, src, s.q_right, 0.0f, out, stream);
  else PT_CUDA_CHECK(cudaMemcpyAsync(out, src, sizeof(float) * size_t(r) * c, cudaMemcpyDeviceToDevice, stream));
}

void refresh_side(float* q, const float* x, int d, bool cold, float* v, int r, int c, bool left, cudaStream_t stream) {
  if (cold) return sym_eig_desc(x, d, q, nullptr, stream);
  const size_t dd = size_t(d) * d;
  Buffer<float> xq(dd, stream), qp(dd, stream), old_v(size_t(r) * c, stream);
  Buffer<double> lambda(d, stream);
  Buffer<int> perm(d, stream);
  gemm(false, false, d, d, d, 1.0f, x, q, 0.0f, xq.p, stream);
  rayleigh_kernel<<<detail::ceil_div(d, 128), 128, 0, stream>>>(q, xq.p, d, lambda.p);
  PT_CUDA_CHECK_LAUNCH();
  std::vector<double> h_lambda(d);
  PT_CUDA_CHECK(cudaMemcpyAsync(h_lambda.data(), lambda.p, sizeof(double) * d, cudaMemcpyDeviceToHost, stream));
  PT_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<int> h_perm(d);
  std::iota(h_perm.begin(), h_perm.end(), 0);
  std::stable_sort(h_perm.begin(), h_perm.end(), [&](int a, int b) { return h_lambda[a] > h_lambda[b]; });
  PT_CUDA_CHECK(cudaMemcpyAsync(perm.p, h_perm.data(), sizeof(int) * d, cudaMemcpyHostToDevice, stream));
  permute_kernel<<<blocks_for(dd), kThreads, 0, stream>>>(xq.p, qp.p, perm.p, d, d, false);
  PT_CUDA_CHECK_LAUNCH();
  PT_CUDA_CHECK(cudaMemcpyAsync(old_v.p, v, sizeof(float) * size_t(r) * c, cudaMemcpyDeviceToDevice, stream));
  permute_kernel<<<blocks_for(size_t(r) * c), kThreads, 0, stream>>>(old_v.p, v, perm.p, r, c, left);
  PT_CUDA_CHECK_LAUNCH();
  qr_q(qp.p, d, stream);
  PT_CUDA_CHECK(cudaMemcpyAsync(q, qp.p, sizeof(float) * dd, cudaMemcpyDeviceToDevice, stream));
  PT_CUDA_CHECK(cudaStreamSynchronize(stream));  // h_perm and the scratch outlive their use
}

void refresh(const RotatedMatrix& s, const RotationPlan& p, const float* g, const AdamWParams& hp, bool cold,
             const BasisRotationOptions& o, cudaStream_t stream) {
  const int r = p.rows, c = p.cols;
  const size_t n = size_t(r) * c;
  Buffer<float> mh(o.source == "1st" ? n : 0, stream), xl(size_t(r) * r, stream), xr(size_t(c) * c, stream);
  const float* stat_left = s.stat_left;
  const float* stat_right = s.stat_right;
  if (o.source == "1st") {
    ema_kernel<<<blocks_for(n), kThreads, 0, stream>>>(mh.p, s.m, g, hp.beta1, n);
    PT_CUDA_CHECK_LAUNCH();
    if (p.left) gemm(false, true, r, r, c, 1.0f, mh.p, mh.p, 0.0f, xl.p, stream);
    if (p.right) gemm(true, false, c, c, r, 1.0f, mh.p, mh.p, 0.0f, xr.p, stream);
    stat_left = xl.p;
    stat_right = xr.p;
  }
  if (p.left) refresh_side(s.q_left, stat_left, r, cold, s.v, r, c, true, stream);
  if (p.right) refresh_side(s.q_right, stat_right, c, cold, s.v, r, c, false, stream);
}

}  // namespace

void rotated_adam_update(float* W, const float* grads, const RotatedMatrix& s, const RotationPlan& p,
                         const AdamWParams& hp, const BasisRotationOptions& o, cudaStream_t stream) {
  PT_CHECK(p.rotated() && (s.q_left != nullptr) == p.left && (s.q_right != nullptr) == p.right);
  const int r = p.rows, c = p.cols;
  const size_t n = size_t(r) * c;
  Buffer<float> g(n, stream), gt(n, stream), mt(n, stream), tmp(n, stream);
  scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g.p, grads, hp.grad_scale, n);
  PT_CUDA_CHECK_LAUNCH();
  if (o.source == "2nd") {
    const float bs = float(o.shampoo_beta < 0 ? hp.beta2 : o.shampoo_beta);
    if (p.left) gemm(false, true, r, r, c, 1.0f - bs, g.p, g.p, bs, s.stat_left, stream);
    if (p.right) gemm(true, false, c, c, r, 1.0f - bs, g.p, g.p, bs, s.stat_right, stream);
  }
  const bool cold = all_zero(p.left ? s.q_left : s.q_right, p.left ? size_t(r) * r : size_t(c) * c, stream);
  if (cold || refresh_due(p.slot, hp.t, o.update_freq)) refresh(s, p, g.p, hp, cold, o, stream);
  change_basis(s, r, c, true, g.p, gt.p, tmp.p, stream);
  ema_kernel<<<blocks_for(n), kThreads, 0, stream>>>(s.m, s.m, g.p, hp.beta1, n);
  PT_CUDA_CHECK_LAUNCH();
  change_basis(s, r, c, true, s.m, mt.p, tmp.p, stream);
  const float bc1 = 1.0f - std::pow(hp.beta1, float(hp.t));
  const float bc2 = 1.0f - std::pow(hp.beta2, float(hp.t));
  rotated_adam_kernel<<<blocks_for(n), kThreads, 0, stream>>>(mt.p, gt.p, s.v, hp.beta2, bc1, bc2, hp.eps, n);
  PT_CUDA_CHECK_LAUNCH();
  change_basis(s, r, c, false, mt.p, gt.p, tmp.p, stream);
  apply_kernel<<<blocks_for(n), kThreads, 0, stream>>>(W, gt.p, hp.lr, hp.weight_decay, n);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda
