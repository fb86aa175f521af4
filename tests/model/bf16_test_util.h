// Host-side bf16 helpers shared by the bf16 tests (CPU and gpu-labelled): Philox
// inputs rounded to bf16 and their exact fp32 values. No CUDA dependency.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "model/cpu/bf16.h"

namespace pt::testing {

// n Philox normal samples, shift + scale·N(0,1), rounded to bf16 (nearest even).
inline std::vector<cpu::bf16> bf16_normal(size_t n, uint64_t seed, uint64_t stream, float scale, float shift = 0.0f) {
  std::vector<cpu::bf16> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = cpu::float_to_bf16(shift + scale * philox_normal(seed, stream, i));
  return v;
}

// The exact fp32 value of each bf16 element.
inline std::vector<float> widen(const std::vector<cpu::bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = cpu::bf16_to_float(v[i]);
  return f;
}

}  // namespace pt::testing
