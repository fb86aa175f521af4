// Dense row-major fp32 linear algebra for the matrix optimizers (basis_rotation):
// GEMM over OpenBLAS (cblas_sgemm), symmetric eigendecomposition (LAPACKE_ssyevd)
// and the Q factor of a Householder QR (LAPACKE_sgeqrf + sorgqr). CPU twins of
// optim/cuda/linalg.h (cuBLAS, cuSOLVER), same names and argument order.
#pragma once

namespace pt {

// C (r×c) = alpha·op(A)·op(B) + beta·C, where op(A) is r×k (A is k×r when trans_a) and
// op(B) is k×c (B is c×k when trans_b). All row-major, densely packed.
void gemm(bool trans_a, bool trans_b, int r, int c, int k, float alpha, const float* A, const float* B, float beta,
          float* C);

// Q (n×n): orthonormal eigenvectors of the symmetric X (n×n; only its upper triangle
// is read) as columns, ordered by non-increasing eigenvalue; lambda (n), if not null,
// gets the eigenvalues in that order.
void sym_eig_desc(const float* X, int n, float* Q, float* lambda);

// A (n×n) <- Q of A = Q·R (Householder; LAPACK's sign convention, R's diagonal may be negative).
void qr_q(float* A, int n);

}  // namespace pt
