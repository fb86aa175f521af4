// GPU twins of optim/linalg.cc; see linalg.h. Host code around cuBLAS/cuSOLVER plus
// two small kernels (transpose with column reversal, plain transpose).
#include "optim/cuda/linalg.h"

#include <cublas_v2.h>
#include <cusolverDn.h>

#include <algorithm>
#include <string>

#include "model/cuda/common.cuh"
#include "model/cuda/cuda_check.h"

#define PT_CUSOLVER_CHECK(call)                                                                         \
  do {                                                                                                  \
    cusolverStatus_t pt_cusolver_rc_ = (call);                                                          \
    if (pt_cusolver_rc_ != CUSOLVER_STATUS_SUCCESS)                                                     \
      ::pt::fatal_error(#call, __FILE__, __LINE__, "cuSOLVER status " + std::to_string(int(pt_cusolver_rc_))); \
  } while (0)

namespace pt::cuda {
namespace {

struct Handles {
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  Handles() {
    PT_CUBLAS_CHECK(cublasCreate(&blas));
    PT_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH));  // fp32, no TF32: the CPU twin's arithmetic
    PT_CUSOLVER_CHECK(cusolverDnCreate(&solver));
  }
  ~Handles() {
    cusolverDnDestroy(solver);
    cublasDestroy(blas);
  }
};

Handles& handles(cudaStream_t stream) {
  static thread_local Handles h;
  PT_CUBLAS_CHECK(cublasSetStream(h.blas, stream));
  PT_CUSOLVER_CHECK(cusolverDnSetStream(h.solver, stream));
  return h;
}

// out (row-major n×n)[i][j] = in (column-major)[i][reverse ? n-1-j : j], i.e. the
// column-major matrix in row-major storage, columns optionally reversed.
__global__ void to_row_major(const float* in, float* out, int n, bool reverse) {
  const int i = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const int src = reverse ? n - 1 - j : j;
  out[size_t(i) * n + j] = in[size_t(src) * n + i];
}

__global__ void reverse(const float* in, float* out, int n) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < n) out[j] = in[n - 1 - j];
}

void launch_to_row_major(const float* in, float* out, int n, bool rev, cudaStream_t stream) {
  to_row_major<<<dim3(detail::ceil_div(n, 128), n), 128, 0, stream>>>(in, out, n, rev);
  PT_CUDA_CHECK_LAUNCH();
}

// Scratch of `floats` floats and one int, freed at scope exit (stream-ordered).
struct Scratch {
  float* f = nullptr;
  int* info = nullptr;
  cudaStream_t s;
  Scratch(size_t floats, cudaStream_t stream) : s(stream) {
    PT_CUDA_CHECK(cudaMallocAsync(&f, (floats + 1) * sizeof(float), s));
    PT_CUDA_CHECK(cudaMallocAsync(&info, sizeof(int), s));
  }
  ~Scratch() {
    cudaFreeAsync(f, s);
    cudaFreeAsync(info, s);
  }
  void check(const char* what) const {
    int h = 0;
    PT_CUDA_CHECK(cudaMemcpyAsync(&h, info, sizeof(int), cudaMemcpyDeviceToHost, s));
    PT_CUDA_CHECK(cudaStreamSynchronize(s));
    PT_CHECK_MSG(h == 0, std::string(what) + " failed with info " + std::to_string(h));
  }
};

}  // namespace

void gemm(bool trans_a, bool trans_b, int r, int c, int k, float alpha, const float* A, const float* B, float beta,
          float* C, cudaStream_t stream) {
  // Row-major C = op(A)·op(B)  <=>  column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, where a row-major
  // matrix read column-major is its transpose.
  PT_CUBLAS_CHECK(cublasSgemm(handles(stream).blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, c, r, k, &alpha, B, trans_b ? k : c, A,
                              trans_a ? r : k, &beta, C, c));
}

void sym_eig_desc(const float* X, int n, float* Q, float* lambda, cudaStream_t stream) {
  Handles& h = handles(stream);
  // Row-major X read column-major is Xᵀ; its lower triangle is X's row-major upper one.
  int lwork = 0;
  Scratch a(size_t(n) * n + n, stream);
  float* w = a.f + size_t(n) * n;
  PT_CUDA_CHECK(cudaMemcpyAsync(a.f, X, sizeof(float) * size_t(n) * n, cudaMemcpyDeviceToDevice, stream));
  PT_CUSOLVER_CHECK(cusolverDnSsyevd_bufferSize(h.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, a.f, n,
                                                w, &lwork));
  Scratch work(size_t(lwork), stream);
  PT_CUSOLVER_CHECK(cusolverDnSsyevd(h.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, a.f, n, w, work.f,
                                     lwork, a.info));
  a.check("cusolverDnSsyevd");
  launch_to_row_major(a.f, Q, n, true, stream);  // ascending -> descending columns
  if (lambda) {
    reverse<<<detail::ceil_div(n, 128), 128, 0, stream>>>(w, lambda, n);
    PT_CUDA_CHECK_LAUNCH();
  }
}

void qr_q(float* A, int n, cudaStream_t stream) {
  Handles& h = handles(stream);
  Scratch a(size_t(n) * n + n, stream);
  float* tau = a.f + size_t(n) * n;
  launch_to_row_major(A, a.f, n, false, stream);  // the transpose: column-major storage of A
  int lq = 0, lo = 0;
  PT_CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(h.solver, n, n, a.f, n, &lq));
  PT_CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(h.solver, n, n, n, a.f, n, tau, &lo));
  Scratch work(size_t(std::max(lq, lo)), stream);
  PT_CUSOLVER_CHECK(cusolverDnSgeqrf(h.solver, n, n, a.f, n, tau, work.f, lq, a.info));
  a.check("cusolverDnSgeqrf");
  PT_CUSOLVER_CHECK(cusolverDnSorgqr(h.solver, n, n, n, a.f, n, tau, work.f, lo, a.info));
  a.check("cusolverDnSorgqr");
  launch_to_row_major(a.f, A, n, false, stream);
}

}  // namespace pt::cuda
