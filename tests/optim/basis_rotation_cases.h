// Shared by the basis_rotation tests (CPU against float64, GPU against CPU): the matrix
// shapes and settings they cover, and the anisotropic gradients they feed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/rng.h"

namespace pt::testing {

// Shapes whose rotated sides have full-rank, well-separated statistics from the first
// update, so the bases are unique up to column signs and well conditioned. (A
// rank-deficient side's null-space basis is arbitrary; a large square bi matrix has
// near-equal eigenvalues whose fp32 eigenvectors mix, which changes Adam's per-coordinate
// normalization at O(lr): measured 5e-4 at 16x16 against float64. Both are properties of
// the method in fp32, not errors the comparison could attribute.) The 6x64 and 64x6
// cases span several GPU blocks.
struct RotationCase {
  int r, c;
  const char* geometry;
  const char* source;
  int64_t max_precond_dim;
  std::string name() const {
    return std::to_string(r) + "x" + std::to_string(c) + " " + geometry + " " + source + " max_precond_dim " +
           std::to_string(max_precond_dim);
  }
};

inline std::vector<RotationCase> rotation_cases() {
  return {{5, 5, "bi", "2nd", 8192},  {4, 6, "uni", "2nd", 8192}, {6, 4, "uni", "2nd", 8192},
          {5, 5, "bi", "1st", 8192},  {4, 6, "uni", "1st", 8192}, {4, 6, "bi", "2nd", 5},
          {6, 64, "uni", "2nd", 8192}, {64, 6, "uni", "1st", 8192}};
}

// g[i][j] = (1 + i)·(1 + j/2)·z, z standard normal: distinct row and column scales, so
// the statistics have well-separated spectra.
inline std::vector<float> anisotropic(int r, int c, uint64_t seed, int t) {
  std::vector<float> g(size_t(r) * c);
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < c; ++j)
      g[size_t(i) * c + j] = float((1 + i) * (1 + 0.5 * j) * philox_normal(seed, uint64_t(t), size_t(i) * c + j));
  return g;
}

}  // namespace pt::testing
