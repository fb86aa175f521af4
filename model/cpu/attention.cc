// Causal multi-head self-attention (CPU); see attention.h. q, k, v are read in
// place from the strided qkv buffer (leading dimension 3C), so no head
// transposes are materialized. Scores are computed by sgemm in query blocks of
// kBlock rows: block [q0, q1) only needs keys [0, q1), so the blocks above the
// diagonal (about half the T x T work at T = 128) are never computed, and the
// backward skips them the same way. Within a block the few entries above the
// diagonal are masked after the sgemm. The softmax uses the vectorizable exp
// and fixed-order sums of vec_math.h, so results do not depend on threads.
#include "model/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "common/check.h"
#include "model/cpu/vec_math.h"

namespace pt::cpu {
namespace {
// Query/key block: large enough for efficient sgemm calls, small enough that the
// skipped triangle is most of the masked work (T = 128: 4 blocks, 10/16 of the
// full score matrix computed).
constexpr int kBlock = 32;

// Head size HS = C / NH, the qkv row length 3C and the score scale 1 / sqrt(HS).
struct HeadDims {
  int HS, C3;
  float scale;
};

HeadDims head_dims(int C, int NH) {
  PT_CHECK(C % NH == 0);
  const int HS = C / NH;
  return HeadDims{HS, 3 * C, 1.0f / std::sqrt(float(HS))};
}
}  // namespace

void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) {
  const auto [HS, C3, scale] = head_dims(C, NH);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const float* q = inp + size_t(b) * T * C3 + size_t(h) * HS;  // (T, HS), ld 3C
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = att + (size_t(b) * NH + h) * T * T;  // (T, T)
      float* o = out + size_t(b) * T * C + size_t(h) * HS;  // (T, HS), ld C
      for (int q0 = 0; q0 < T; q0 += kBlock) {
        const int q1 = std::min(q0 + kBlock, T);
        float* ablk = a + size_t(q0) * T;
        // scores[q0:q1, 0:q1] = scale * q[q0:q1] · k[0:q1]ᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q1 - q0, q1, HS, scale, q + size_t(q0) * C3, C3, k,
                    C3, 0.0f, ablk, T);
        for (int t = q0; t < q1; ++t) {
          float* row = a + size_t(t) * T;
          const float mx = row_max(row, t + 1);
          const float inv = 1.0f / exp_shift_sum(row, t + 1, mx);
          for (int s = 0; s <= t; ++s) row[s] *= inv;
          std::memset(row + t + 1, 0, sizeof(float) * size_t(T - t - 1));  // att's contract: exact zeros
        }
        // out[q0:q1] = att[q0:q1, 0:q1] · v[0:q1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q1 - q0, HS, q1, 1.0f, ablk, T, v, C3, 0.0f,
                    o + size_t(q0) * C, C);
      }
    }
  }
}

void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* att, int B,
                        int T, int C, int NH) {
  const auto [HS, C3, scale] = head_dims(C, NH);
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
      float* datt = scratch;  // (T, T); row t is valid on [0, end of t's block), zero above the diagonal
      for (int q0 = 0; q0 < T; q0 += kBlock) {
        const int q1 = std::min(q0 + kBlock, T);
        // datt[q0:q1, 0:q1] = dout[q0:q1] · v[0:q1]ᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q1 - q0, q1, HS, 1.0f, d + size_t(q0) * C, C, v, C3,
                    0.0f, datt + size_t(q0) * T, T);
        // Softmax backward in place: dpre = att * (datt - <att, datt>_row), times the score scale.
        for (int t = q0; t < q1; ++t) {
          const float* arow = a + size_t(t) * T;
          float* drow = datt + size_t(t) * T;
          const float dot = dot8(arow, drow, t + 1);
          for (int s = 0; s <= t; ++s) drow[s] = arow[s] * (drow[s] - dot) * scale;
          for (int s = t + 1; s < q1; ++s) drow[s] = 0.0f;
        }
        // dq[q0:q1] = dpre[q0:q1, 0:q1] · k[0:q1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q1 - q0, HS, q1, 1.0f, datt + size_t(q0) * T, T, k,
                    C3, 0.0f, dq + size_t(q0) * C3, C3);
      }
      // Key block [k0, k1) receives gradient from queries t >= k0 only.
      for (int k0 = 0; k0 < T; k0 += kBlock) {
        const int k1 = std::min(k0 + kBlock, T);
        // dv[k0:k1] = att[k0:T, k0:k1]ᵀ · dout[k0:T] ; dk[k0:k1] = dpre[k0:T, k0:k1]ᵀ · q[k0:T]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k1 - k0, HS, T - k0, 1.0f, a + size_t(k0) * T + k0, T,
                    d + size_t(k0) * C, C, 0.0f, dv + size_t(k0) * C3, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k1 - k0, HS, T - k0, 1.0f,
                    datt + size_t(k0) * T + k0, T, q + size_t(k0) * C3, C3, 0.0f, dk + size_t(k0) * C3, C3);
      }
    }
  }
}

}  // namespace pt::cpu
