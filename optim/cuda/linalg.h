// Dense row-major fp32 linear algebra on the GPU: twins of optim/linalg.h (same names
// and argument order, plus the stream), over cuBLAS (cublasSgemm, fp32 math) and
// cuSOLVER (syevd; geqrf + orgqr). All pointers are device memory. The row-major
// matrices are handed to the column-major libraries as their transposes; sym_eig_desc
// reads the same (row-major upper) triangle as the CPU twin. Eigenvectors and QR
// factors are unique only up to column signs (and within repeated eigenvalues), so the
// twins agree up to those; the optimizer's update does not depend on the signs.
// One cuBLAS and one cuSOLVER handle per host thread, created on first use.
#pragma once

#include <cuda_runtime.h>

namespace pt::cuda {

// C (r×c) = alpha·op(A)·op(B) + beta·C; op(A) is r×k (A is k×r when trans_a), op(B) is k×c.
void gemm(bool trans_a, bool trans_b, int r, int c, int k, float alpha, const float* A, const float* B, float beta,
          float* C, cudaStream_t stream);

// Q (n×n): eigenvectors of the symmetric X as columns, by non-increasing eigenvalue;
// lambda (n, device), if not null, the eigenvalues in that order.
void sym_eig_desc(const float* X, int n, float* Q, float* lambda, cudaStream_t stream);

// A (n×n) <- Q of A = Q·R (Householder).
void qr_q(float* A, int n, cudaStream_t stream);

}  // namespace pt::cuda
