// optimizer.grad_clip through clip_scale (optim/grad_norm.h): the factor the
// gradients are multiplied by before AdamW, at the boundaries of the limit.
//   norm <= limit: 1 exactly (nothing to clip, including norm == limit);
//   norm  > limit: limit / (norm + 1e-6) < 1, so the clipped norm is <= limit and
//                  within 1e-6 of it;
//   limit = 0:     off, 1 for every norm.
// The end-to-end effect on whole steps is checked against PyTorch's
// clip_grad_norm_ by tests/app/train_step_reference_test.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "optim/grad_norm.h"

namespace pt {
namespace {

constexpr double kLimits[] = {0.25, 1.0, 1.6, 1000.0};

TEST(ClipScale, NormBelowOrEqualToTheLimitIsNotClipped) {
  for (double limit : kLimits) {
    EXPECT_EQ(clip_scale(limit, limit), 1.0f) << "norm == limit " << limit;
    EXPECT_EQ(clip_scale(std::nextafter(limit, 0.0), limit), 1.0f) << "just below " << limit;
    EXPECT_EQ(clip_scale(0.5 * limit, limit), 1.0f) << "half of " << limit;
    EXPECT_EQ(clip_scale(0.0, limit), 1.0f) << "zero gradient, limit " << limit;
  }
}

TEST(ClipScale, NormAboveTheLimitIsScaledToTheLimit) {
  for (double limit : kLimits) {
    for (double norm : {std::nextafter(limit, 2.0 * limit), limit * (1.0 + 1e-3), 2.0 * limit, 1e6 * limit}) {
      const double s = clip_scale(norm, limit);
      // float(limit / (norm + 1e-6)): one float rounding of the double quotient.
      EXPECT_NEAR(s, limit / (norm + 1e-6), 0.6e-7 * s) << "norm " << norm << " limit " << limit;
      // Strictly below 1 unless the float rounds 1 - 1e-6/limit up (limit 1000, norm just above).
      if (norm >= limit * (1.0 + 1e-3)) EXPECT_LT(s, 1.0) << "norm " << norm << " limit " << limit;
      EXPECT_LE(s, 1.0) << "norm " << norm << " limit " << limit;
      EXPECT_LE(norm * s, limit * (1.0 + 1e-7)) << "clipped norm above the limit: norm " << norm << " limit " << limit;
      EXPECT_GE(norm * s, limit * (1.0 - 1e-6 / limit - 1e-7)) << "clipped further than the limit: norm " << norm;
    }
  }
  // Just above the limit the factor is continuous: 1 - O(1e-6 / limit), not a jump.
  EXPECT_GT(clip_scale(std::nextafter(1.0, 2.0), 1.0), 1.0f - 2e-6f);
}

TEST(ClipScale, ZeroLimitTurnsClippingOff) {
  for (double norm : {0.0, 1e-12, 1.0, 1.6, 1e30, std::numeric_limits<double>::max()})
    EXPECT_EQ(clip_scale(norm, 0.0), 1.0f) << "norm " << norm;
}

}  // namespace
}  // namespace pt
