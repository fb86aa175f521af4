// plan_report: the text `pipetrain plan` prints carries the config, layer split, action lists,
// timeline, bubble, peak in-flight and cost-model step time taken from the simulation results.
#include "pipeline/plan_report.h"

#include <gtest/gtest.h>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

TEST(PlanReport, PrintsEveryPrediction) {
  testing_util::Planned p = testing_util::plan_or_fail({"1f1b", 4, 1, 8, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  CostModel c = CostModel::uniform(4, 0.010, 0.012, 0.008, 0.001);
  SimResult timed;
  ASSERT_TRUE(simulate(p.lowered, c, &timed).is_ok());
  PlanReportInputs in;
  in.resolved_config = "schedule:\n  kind: 1f1b\n";
  in.layer_ranges = {{0, 3}, {3, 6}, {6, 9}, {9, 12}};
  in.cost_model = &timed;
  const std::string text = plan_report(p.lowered, p.sim, in);
  EXPECT_NE(text.find("kind: 1f1b"), std::string::npos);
  EXPECT_NE(text.find("stage 0 (rank 0): layers 0..2 + embedding"), std::string::npos) << text;
  EXPECT_NE(text.find("stage 3 (rank 3): layers 9..11 + head/loss"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 1: 1RECV_ACT0<-0 1F0 1SEND_ACT0->2"), std::string::npos) << text;
  EXPECT_NE(text.find("GPU0|F0F1F2F3 . . . . . .B0B0F4"), std::string::npos) << text;
  EXPECT_NE(text.find("bubble fraction: 27.27%"), std::string::npos) << text;  // 3/11
  EXPECT_NE(text.find("peak in-flight activations per rank (micro-batch x stage units): 4 3 2 1"),
            std::string::npos)
      << text;
  char expected[64];
  std::snprintf(expected, sizeof(expected), "predicted step time %.3f s", timed.makespan);
  EXPECT_NE(text.find(expected), std::string::npos) << text;
  EXPECT_GT(timed.makespan, 11 * 0.030);  // at least the uniform-cost makespan in seconds
}

TEST(PlanReport, CutsLongActionLists) {
  testing_util::Planned p = testing_util::plan_or_fail({"gpipe", 2, 1, 64, 0});
  PlanReportInputs in;
  in.max_actions_per_rank = 4;
  const std::string text = plan_report(p.lowered, p.sim, in);
  EXPECT_NE(text.find("rank 0: 0F0 0SEND_ACT0->1 0F1 0SEND_ACT1->1 ... ("), std::string::npos)
      << text;
  EXPECT_EQ(text.find("cost model"), std::string::npos);
}

}  // namespace
}  // namespace pt
