#include "optim/linalg.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/check.h"

namespace pt {

void gemm(bool trans_a, bool trans_b, int r, int c, int k, float alpha, const float* A, const float* B, float beta,
          float* C) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, r, c, k, alpha,
              A, trans_a ? r : k, B, trans_b ? k : c, beta, C, c);
}

void sym_eig_desc(const float* X, int n, float* Q, float* lambda) {
  std::vector<float> a(X, X + size_t(n) * n), w(n);
  const lapack_int info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, a.data(), n, w.data());
  PT_CHECK_MSG(info == 0, "LAPACKE_ssyevd failed with info " + std::to_string(info));
  // ssyevd orders eigenvalues ascending: reverse the columns.
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) Q[size_t(i) * n + j] = a[size_t(i) * n + (n - 1 - j)];
  if (lambda)
    for (int j = 0; j < n; ++j) lambda[j] = w[n - 1 - j];
}

void qr_q(float* A, int n) {
  std::vector<float> tau(std::max(n, 1));
  lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, n, n, A, n, tau.data());
  PT_CHECK_MSG(info == 0, "LAPACKE_sgeqrf failed with info " + std::to_string(info));
  info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, n, n, n, A, n, tau.data());
  PT_CHECK_MSG(info == 0, "LAPACKE_sorgqr failed with info " + std::to_string(info));
}

}  // namespace pt
