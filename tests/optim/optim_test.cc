// AdamW against a float64 transcription of the update rule; the learning-rate
// schedule against its closed form; the global norm against a direct sum.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/rng.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"

namespace pt {
namespace {

TEST(AdamW, MatchesFloat64ReferenceOverSeveralSteps) {
  const size_t n = 37;
  std::vector<float> p(n), m(n, 0.f), v(n, 0.f);
  std::vector<double> pd(n), md(n, 0.0), vd(n, 0.0);
  for (size_t i = 0; i < n; ++i) pd[i] = p[i] = philox_normal(1, 0, i);
  AdamWParams hp;
  hp.lr = 1e-2f; hp.beta1 = 0.9f; hp.beta2 = 0.95f; hp.eps = 1e-8f; hp.weight_decay = 0.1f; hp.grad_scale = 0.5f;
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = philox_normal(2, t, i);
    hp.t = t;
    adamw_update(p.data(), g.data(), m.data(), v.data(), n, hp);
    for (size_t i = 0; i < n; ++i) {
      double gi = double(g[i]) * 0.5;
      md[i] = 0.9 * md[i] + 0.1 * gi;
      vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
      double mh = md[i] / (1 - std::pow(0.9, t)), vh = vd[i] / (1 - std::pow(0.95, t));
      pd[i] -= 1e-2 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * pd[i]);
    }
  }
  // Each step moves a weight by at most ~lr; fp32 rounding of O(1) values over 5
  // steps stays within a few ulps of 1, far below 1e-5.
  double moved = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], pd[i], 1e-5) << i;
    moved += std::fabs(pd[i] - double(philox_normal(1, 0, i)));
  }
  EXPECT_GT(moved, 1e-3);  // the update did something
}

TEST(LrSchedule, WarmupThenCosineToMin) {
  LrSchedule s;
  s.lr = 1.0; s.min_lr_ratio = 0.1; s.warmup_steps = 4; s.total_steps = 14;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(s, 3), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 4), 1.0);
  EXPECT_NEAR(learning_rate(s, 13), 0.1, 1e-12);
  // halfway through the decay: min + (max-min)/2
  s.warmup_steps = 0; s.total_steps = 11;
  EXPECT_NEAR(learning_rate(s, 5), 0.55, 1e-12);
  s.kind = "linear";
  EXPECT_NEAR(learning_rate(s, 5), 0.55, 1e-12);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(s, 9), 1.0);
}

TEST(GradNorm, CombinesInIdOrderRegardlessOfInputOrder) {
  std::vector<float> a = {3.f, 4.f}, b = {1e-8f, 12.f};
  double sa = sum_of_squares(a.data(), 2), sb = sum_of_squares(b.data(), 2);
  EXPECT_DOUBLE_EQ(sa, 25.0);
  double n1 = combine_norm({{0, sa}, {1, sb}});
  double n2 = combine_norm({{1, sb}, {0, sa}});
  EXPECT_EQ(n1, n2);
  EXPECT_NEAR(n1, std::sqrt(25.0 + 144.0), 1e-12);
  EXPECT_FLOAT_EQ(clip_scale(13.0, 1.0), float(1.0 / (13.0 + 1e-6)));
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0f);
  EXPECT_EQ(clip_scale(50.0, 0.0), 1.0f);
}

}  // namespace
}  // namespace pt
