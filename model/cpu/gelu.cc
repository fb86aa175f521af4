// GELU, tanh approximation (CPU); see gelu.h.
// libm's tanhf is a scalar call and dominated the CPU step time, so tanh is
// computed as 1 - 2 / (1 + exp(2u)) with a branch-free exp that the compiler
// vectorizes. It uses only IEEE +,-,*,/ and integer ops, so vector and scalar
// paths give identical bits (no thread or ISA dependence beyond FMA
// contraction, which the strict -std=c++20 mode keeps off).
#include "model/cpu/gelu.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace pt::cpu {
namespace {
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// exp(x) to ~2 ulp for x in [-87, 88] (clamped outside): 2^n · e^r with
// n = round(x / ln 2), |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial
// (truncation (ln2/2)^7 / 7! ≈ 1.2e-7 relative).
inline float exp_vectorizable(float x) {
  x = std::max(x, -87.0f);
  x = std::min(x, 88.0f);
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRound) - kRound;
  // ln 2 split in a part exact in few bits and a remainder, so r is accurate.
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = std::bit_cast<float>(static_cast<int32_t>((static_cast<int32_t>(n) + 127) << 23));
  return p * scale;
}

// tanh(u) = 1 - 2 / (1 + e^{2u}); saturates correctly to ±1 (e^{2u} -> inf or 0).
// Absolute error ~1e-7 near 0 (cancellation), irrelevant inside 0.5 x (1 + tanh).
inline float tanh_vectorizable(float u) { return 1.0f - 2.0f / (1.0f + exp_vectorizable(2.0f * u)); }
}  // namespace

void gelu_forward(float* out, const float* inp, int N) {
  for (size_t i = 0; i < size_t(N); ++i) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    out[i] = 0.5f * x * (1.0f + tanh_vectorizable(u));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int N) {
  for (size_t i = 0; i < size_t(N); ++i) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    float th = tanh_vectorizable(u);
    float sech2 = 1.0f - th * th;
    float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] = local * dout[i];
  }
}

}  // namespace pt::cpu
