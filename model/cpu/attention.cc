// Causal multi-head self-attention (CPU); see attention.h. q, k, v are read in
// place from the strided qkv buffer (leading dimension 3C), so no head
// transposes are materialized. The full T x T score block is computed by sgemm
// and the upper triangle is then masked: cheaper than T small gemv calls.
#include "model/cpu/attention.h"

#include <cblas.h>

#include <cmath>
#include <cstddef>

#include "common/check.h"

namespace pt::cpu {

void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) {
  PT_CHECK(C % NH == 0);
  const int HS = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(HS));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const float* q = inp + size_t(b) * T * C3 + size_t(h) * HS;  // (T, HS), ld 3C
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = att + (size_t(b) * NH + h) * T * T;  // (T, T)
      float* o = out + size_t(b) * T * C + size_t(h) * HS;  // (T, HS), ld C
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, C3, k, C3, 0.0f, a, T);
      for (int t = 0; t < T; ++t) {
        float* row = a + size_t(t) * T;
        float mx = row[0];
        for (int s = 1; s <= t; ++s) mx = row[s] > mx ? row[s] : mx;
        float sum = 0.0f;
        for (int s = 0; s <= t; ++s) {
          row[s] = std::exp(row[s] - mx);
          sum += row[s];
        }
        const float inv = 1.0f / sum;
        for (int s = 0; s <= t; ++s) row[s] *= inv;
        for (int s = t + 1; s < T; ++s) row[s] = 0.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, v, C3, 0.0f, o, C);
    }
  }
}

void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* att, int B,
                        int T, int C, int NH) {
  PT_CHECK(C % NH == 0);
  const int HS = C / NH;
  const int C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(HS));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const size_t qoff = size_t(b) * T * C3 + size_t(h) * HS;
      const float* q = inp + qoff;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dinp + qoff;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* a = att + (size_t(b) * NH + h) * T * T;
      const float* d = dout + size_t(b) * T * C + size_t(h) * HS;
      float* datt = scratch;  // (T, T)
      // datt = dout · vᵀ ; dv = attᵀ · dout
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, d, C, v, C3, 0.0f, datt, T);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, d, C, 0.0f, dv, C3);
      // Softmax backward in place: dpre = att * (datt - <att, datt>_row), times the score scale.
      for (int t = 0; t < T; ++t) {
        const float* arow = a + size_t(t) * T;
        float* drow = datt + size_t(t) * T;
        float dot = 0.0f;
        for (int s = 0; s <= t; ++s) dot += arow[s] * drow[s];
        for (int s = 0; s <= t; ++s) drow[s] = arow[s] * (drow[s] - dot) * scale;
        for (int s = t + 1; s < T; ++s) drow[s] = 0.0f;
      }
      // dq = dpre · k ; dk = dpreᵀ · q
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, datt, T, k, C3, 0.0f, dq, C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, datt, T, q, C3, 0.0f, dk, C3);
    }
  }
}

}  // namespace pt::cpu
