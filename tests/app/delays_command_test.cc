// PipeDream's global delay law (algorithms.md §5.2), measured on the project's own PipeDream
// schedule by pipedream_global_delay: the steady-state max is S^2 - S/2 for every even S in
// 2..32 (the closed form of §5.2), and the measured values of §5.2's table hold for odd S and for
// the mean. A longer segment gives the same steady state.
#include "app/delays_command.h"
#include "pipeline/schedules/delay_law.h"

#include <gtest/gtest.h>

namespace pt {
namespace {

TEST(PipeDreamGlobalDelay, MaxIsSSquaredMinusHalfSForEveryEvenS) {
  for (int S = 2; S <= 32; S += 2) {
    GlobalDelayLaw law;
    ASSERT_TRUE(pipedream_global_delay(S, 16 * S, &law).is_ok()) << S;
    EXPECT_EQ(law.max_delay, S * S - S / 2) << "S=" << S;
    // Measured here (not in §5.2, whose table rounds it): the mean is exactly (S^2 - 1) / 2.
    EXPECT_NEAR(law.mean_delay, (S * S - 1) / 2.0, 1e-9) << "S=" << S;
    EXPECT_GT(law.pairs, 0) << S;
  }
}

TEST(PipeDreamGlobalDelay, MatchesTheMeasuredTableOfSection52) {
  struct Row {
    int S, max;
    double mean;
  };
  // §5.2: max 3, 7, 14, 33, 60; mean 1.5, 4.0, 7.5, 17.5, 31.5 (one decimal).
  for (Row r : {Row{2, 3, 1.5}, Row{3, 7, 4.0}, Row{4, 14, 7.5}, Row{6, 33, 17.5}, Row{8, 60, 31.5}}) {
    GlobalDelayLaw law;
    ASSERT_TRUE(pipedream_global_delay(r.S, 16 * r.S, &law).is_ok());
    EXPECT_EQ(law.max_delay, r.max) << "S=" << r.S;
    EXPECT_NEAR(law.mean_delay, r.mean, 0.1) << "S=" << r.S;
  }
}

TEST(PipeDreamGlobalDelay, SteadyStateDoesNotDependOnTheSegmentLength) {
  GlobalDelayLaw a, b;
  ASSERT_TRUE(pipedream_global_delay(6, 36, &a).is_ok());
  ASSERT_TRUE(pipedream_global_delay(6, 240, &b).is_ok());
  EXPECT_EQ(a.max_delay, b.max_delay);
  EXPECT_NEAR(a.mean_delay, b.mean_delay, 0.1);
}

TEST(PipeDreamGlobalDelay, BadArgumentsAreErrors) {
  GlobalDelayLaw law;
  EXPECT_FALSE(pipedream_global_delay(1, 64, &law).is_ok());
  EXPECT_FALSE(pipedream_global_delay(4, 23, &law).is_ok());
  EXPECT_FALSE(run_delays_command(1).is_ok());
}

}  // namespace
}  // namespace pt
