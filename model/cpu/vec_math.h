// Branch-free exp and fixed-order row reductions shared by the CPU ops
// (GELU, attention softmax, cross-entropy). libm's expf is a scalar call that
// dominated the softmax loops; this exp uses only IEEE +,-,*,/ and integer bit
// operations, so GCC vectorizes the loops that call it and vector and scalar
// paths give identical bits. The reductions use 8 partial sums in a fixed
// order, so results never depend on the thread count or the ISA.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pt::cpu {

// exp(x) to ~2 ulp for x in [-87, 88] (clamped outside): 2^n · e^r with
// n = round(x / ln 2), |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial
// (truncation (ln2/2)^7 / 7! ≈ 1.2e-7 relative).
inline float exp_vectorizable(float x) {
  x = std::max(x, -87.0f);
  x = std::min(x, 88.0f);
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * kLog2e + kRound;
  const float n = shifted - kRound;
  // ln 2 split in a part exact in few bits and a remainder, so r is accurate.
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // The integer n read from shifted's mantissa bits (exact for |n| < 2^22): equal
  // to int(n), but without a float->int conversion, which may trap and so keeps
  // GCC from vectorizing unless -fno-trapping-math is given.
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  const float scale = std::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(ni + 127) << 23));
  return p * scale;
}

// max of x[0..n), n >= 1; 8 running maxima combined in a fixed order.
inline float row_max(const float* x, int n) {
  float m[8];
  for (int j = 0; j < 8; ++j) m[j] = x[0];
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  float r = m[0];
  for (int j = 1; j < 8; ++j) r = m[j] > r ? m[j] : r;
  return r;
}

// out[i] = exp(x[i] - shift) for i < n; returns their sum (8 partial sums, fixed
// order). out may equal x (in place).
inline float exp_shift_sum(float* out, const float* x, int n, float shift) {
  int i0 = 0;
#if defined(__SSE2__)
  // exp_vectorizable, 4 lanes, the same operations in the same order (identical
  // bits). Written out because the clamps are branches that GCC only if-converts
  // with -fno-trapping-math, which is a per-file build flag.
  const __m128 vshift = _mm_set1_ps(shift);
  for (; i0 + 4 <= n; i0 += 4) {
    __m128 v = _mm_sub_ps(_mm_loadu_ps(x + i0), vshift);
    v = _mm_min_ps(_mm_max_ps(v, _mm_set1_ps(-87.0f)), _mm_set1_ps(88.0f));
    const __m128 shifted = _mm_add_ps(_mm_mul_ps(v, _mm_set1_ps(1.44269504088896341f)), _mm_set1_ps(12582912.0f));
    const __m128 nn = _mm_sub_ps(shifted, _mm_set1_ps(12582912.0f));
    const __m128 r = _mm_sub_ps(_mm_sub_ps(v, _mm_mul_ps(nn, _mm_set1_ps(0.693145751953125f))),
                                _mm_mul_ps(nn, _mm_set1_ps(1.428606765330187045e-06f)));
    __m128 p = _mm_set1_ps(1.0f / 720.0f);
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 120.0f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 24.0f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f / 6.0f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(0.5f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.0f));
    const __m128i ni = _mm_sub_epi32(_mm_castps_si128(shifted), _mm_castps_si128(_mm_set1_ps(12582912.0f)));
    const __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, _mm_set1_epi32(127)), 23));
    _mm_storeu_ps(out + i0, _mm_mul_ps(p, scale));
  }
#endif
  for (int i = i0; i < n; ++i) out[i] = exp_vectorizable(x[i] - shift);
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += out[i + j];
  for (; i < n; ++i) s[0] += out[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// In place: x[i] = exp(x[i] - shift); returns their sum.
inline float exp_shift_sum(float* x, int n, float shift) { return exp_shift_sum(x, x, n, shift); }

// sum of a[i] * b[i] for i < n (8 partial sums, fixed order).
inline float dot8(const float* a, const float* b, int n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace pt::cpu
