// Fully connected layer on OpenBLAS (CPU); see matmul.h.
#include "model/cpu/matmul.h"

#include <cblas.h>

#include <cstddef>

namespace pt::cpu {

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  float beta = 0.0f;
  if (bias != nullptr) {
    // Pre-fill with the bias and let sgemm accumulate onto it (one pass fewer).
    for (int n = 0; n < N; ++n) {
      float* o = out + size_t(n) * OC;
      for (int o_ = 0; o_ < OC; ++o_) o[o_] = bias[o_];
    }
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
}

void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                            int OC) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias != nullptr) {
    for (int n = 0; n < N; ++n) {
      const float* d = dout + size_t(n) * OC;
      for (int o = 0; o < OC; ++o) dbias[o] += d[o];
    }
  }
}

}  // namespace pt::cpu
