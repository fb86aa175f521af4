// Shared helpers of the model tests: seeded random buffers, a central
// difference gradient checker and a small model config.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"

namespace pt::testing {

// The CPU stage model tests' small GPT-2 (V = 40, maxT = 8, C = 16, NH = 2, tied):
// n_layer blocks.
inline ModelConfig small_test_config(int n_layer) {
  ModelConfig c;
  c.vocab_size = 40;
  c.max_seq_len = 8;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_embd = 16;
  c.tie_embeddings = true;
  c.init_std = 0.1f;
  return c;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = shift + scale * dist(gen);
  return v;
}

inline std::vector<int32_t> random_tokens(size_t n, int vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// sum(out ⊙ r) accumulated in double, so the objective adds no rounding beyond
// the fp32 rounding already in `out`.
inline double weighted_sum(const std::vector<float>& out, const std::vector<float>& r) {
  double s = 0.0;
  for (size_t i = 0; i < out.size(); ++i) s += double(out[i]) * double(r[i]);
  return s;
}

// Compares analytic[i] with the central difference of objective() w.r.t. x[i]
// for every i: |analytic - fd| <= tol * (1 + |fd|). The step actually taken
// ((x+h) - (x-h) after fp32 rounding) is the divisor. Returns the worst error
// relative to (1 + |fd|) so tests can report the margin.
inline double expect_matches_central_difference(const std::string& what, float* x, size_t n,
                                                const std::vector<float>& analytic, float h, double tol,
                                                const std::function<double()>& objective) {
  EXPECT_EQ(analytic.size(), n) << what;
  double worst = 0.0;
  double max_abs_grad = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const float saved = x[i];
    const float xp = saved + h, xm = saved - h;
    x[i] = xp;
    const double fp = objective();
    x[i] = xm;
    const double fm = objective();
    x[i] = saved;
    const double fd = (fp - fm) / (double(xp) - double(xm));
    const double err = std::fabs(double(analytic[i]) - fd) / (1.0 + std::fabs(fd));
    worst = std::max(worst, err);
    max_abs_grad = std::max(max_abs_grad, std::fabs(fd));
    EXPECT_LE(err, tol) << what << "[" << i << "]: analytic " << analytic[i] << " vs central difference " << fd;
  }
  // A gradient check against an all-zero gradient proves nothing.
  EXPECT_GT(max_abs_grad, 1e-2) << what << ": test inputs give a vanishing gradient";
  std::printf("  %-28s max scaled error %.3g (tol %.3g)\n", what.c_str(), worst, tol);
  return worst;
}

}  // namespace pt::testing
