// CPU twin of the bf16 flash attention; see attention_bf16.h for the exact
// sequence of fp32 operations and bf16 roundings it mirrors.
#include "model/cpu/attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "common/check.h"

namespace pt::cpu {
namespace {

// Same fp32 constants as model/cuda/attention_bf16.cu.
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// (T, HS) fp32 copy of one third (which: 0 q, 1 k, 2 v) of head h of batch b.
std::vector<float> head_rows(const bf16* inp, int b, int h, int which, int T, int C, int HS) {
  std::vector<float> x(size_t(T) * HS);
  for (int t = 0; t < T; ++t) {
    const bf16* row = inp + (size_t(b) * T + t) * 3 * C + size_t(which) * C + size_t(h) * HS;
    for (int d = 0; d < HS; ++d) x[size_t(t) * HS + d] = bf16_to_float(row[d]);
  }
  return x;
}

float dot(const float* x, const float* y, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace

void attention_forward_bf16(bf16* out, float* lse, const bf16* inp, int B, int T, int C, int NH) {
  PT_CHECK_MSG(NH > 0 && C % NH == 0, "attention_bf16: C must be a multiple of NH");
  const int HS = C / NH;
  const float scale = 1.0f / std::sqrt(float(HS));
  const float c = scale * kLog2e;
  std::vector<float> s2(kAttentionBf16Tile), o(HS);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const std::vector<float> q = head_rows(inp, b, h, 0, T, C, HS);
      const std::vector<float> k = head_rows(inp, b, h, 1, T, C, HS);
      const std::vector<float> v = head_rows(inp, b, h, 2, T, C, HS);
      for (int t = 0; t < T; ++t) {
        float m = -INFINITY, l = 0.0f;
        std::fill(o.begin(), o.end(), 0.0f);
        for (int k0 = 0; k0 <= t; k0 += kAttentionBf16Tile) {
          const int n = std::min(kAttentionBf16Tile, t + 1 - k0);  // live keys of this tile
          float mt = -INFINITY;
          for (int j = 0; j < n; ++j) {
            s2[j] = dot(&q[size_t(t) * HS], &k[size_t(k0 + j) * HS], HS) * c;
            mt = std::max(mt, s2[j]);
          }
          const float m_new = std::max(m, mt);
          const float alpha = std::exp2(m - m_new);  // m = -inf on the first tile: 0
          m = m_new;
          float ls = 0.0f;
          for (int d = 0; d < HS; ++d) o[d] *= alpha;
          for (int j = 0; j < n; ++j) {
            const float p = std::exp2(s2[j] - m_new);
            ls += p;
            const float pb = round_to_bf16(p);
            const float* vj = &v[size_t(k0 + j) * HS];
            for (int d = 0; d < HS; ++d) o[d] += pb * vj[d];
          }
          l = l * alpha + ls;
        }
        const float inv = 1.0f / l;
        bf16* orow = out + (size_t(b) * T + t) * C + size_t(h) * HS;
        for (int d = 0; d < HS; ++d) orow[d] = float_to_bf16(o[d] * inv);
        lse[(size_t(b) * NH + h) * T + t] = (m + std::log2(l)) * kLn2;
      }
    }
  }
}

void attention_backward_bf16(bf16* dinp, float* scratch, const bf16* dout, const bf16* inp, const bf16* out,
                             const float* lse, int B, int T, int C, int NH) {
  PT_CHECK_MSG(NH > 0 && C % NH == 0, "attention_bf16: C must be a multiple of NH");
  const int HS = C / NH;
  const float scale = 1.0f / std::sqrt(float(HS));
  const float c = scale * kLog2e;
  std::vector<float> dq(size_t(T) * HS), dk(size_t(T) * HS), dv(size_t(T) * HS), dorow(HS);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const std::vector<float> q = head_rows(inp, b, h, 0, T, C, HS);
      const std::vector<float> k = head_rows(inp, b, h, 1, T, C, HS);
      const std::vector<float> v = head_rows(inp, b, h, 2, T, C, HS);
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dk.begin(), dk.end(), 0.0f);
      std::fill(dv.begin(), dv.end(), 0.0f);
      float* D = scratch + (size_t(b) * NH + h) * T;
      for (int t = 0; t < T; ++t) {
        const bf16* go = dout + (size_t(b) * T + t) * C + size_t(h) * HS;
        const bf16* fo = out + (size_t(b) * T + t) * C + size_t(h) * HS;
        float s = 0.0f;
        for (int d = 0; d < HS; ++d) {
          dorow[d] = bf16_to_float(go[d]);
          s += dorow[d] * bf16_to_float(fo[d]);
        }
        D[t] = s;
        const float lse2 = lse[(size_t(b) * NH + h) * T + t] * kLog2e;
        const float* qt = &q[size_t(t) * HS];
        float* dqt = &dq[size_t(t) * HS];
        for (int j = 0; j <= t; ++j) {
          const float* kj = &k[size_t(j) * HS];
          const float p = std::exp2(dot(qt, kj, HS) * c - lse2);
          const float ds = p * (dot(dorow.data(), &v[size_t(j) * HS], HS) - s);
          const float pb = round_to_bf16(p), dsb = round_to_bf16(ds);
          float* dkj = &dk[size_t(j) * HS];
          float* dvj = &dv[size_t(j) * HS];
          for (int d = 0; d < HS; ++d) {
            dvj[d] += pb * dorow[d];
            dkj[d] += dsb * qt[d];
            dqt[d] += dsb * kj[d];
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        bf16* row = dinp + (size_t(b) * T + t) * 3 * C + size_t(h) * HS;
        for (int d = 0; d < HS; ++d) {
          row[d] = float_to_bf16(dq[size_t(t) * HS + d] * scale);
          row[C + d] = float_to_bf16(dk[size_t(t) * HS + d] * scale);
          row[2 * C + d] = float_to_bf16(dv[size_t(t) * HS + d]);
        }
      }
    }
  }
}

}  // namespace pt::cpu
