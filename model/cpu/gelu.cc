// GELU, tanh approximation (CPU); see gelu.h.
// libm's tanhf is a scalar call and dominated the CPU step time, so tanh is
// computed as 1 - 2 / (1 + exp(2u)) with the branch-free exp of vec_math.h that
// the compiler vectorizes. It uses only IEEE +,-,*,/ and integer ops, so vector and scalar
// paths give identical bits (no thread or ISA dependence beyond FMA
// contraction, which the strict -std=c++20 mode keeps off).
#include "model/cpu/gelu.h"

#include <cstddef>

#include "model/cpu/vec_math.h"

namespace pt::cpu {
namespace {
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

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
