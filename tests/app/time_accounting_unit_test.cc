// app/time_accounting: the split of measured spans, sim_time of a list against the closed
// form, and target crossings read back from a metrics file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "app/config.h"
#include "app/time_accounting.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"

namespace pt {
namespace {

ActionSpan span(ActionKind k, double start, double end) {
  ActionSpan s;
  s.kind = uint8_t(k);
  s.start = start;
  s.end = end;
  s.stage = 0;
  return s;
}

TEST(TimeAccounting, SplitSumsSpansByCategoryAndOtherIsTheRest) {
  std::vector<ActionSpan> spans = {span(ActionKind::F, 0, 1),        span(ActionKind::RECV_GRAD, 1, 1.5),
                                   span(ActionKind::B, 1.5, 3.5),    span(ActionKind::SEND_GRAD, 3.5, 3.75),
                                   span(ActionKind::Bx, 4, 4.5),     span(ActionKind::Bw, 4.5, 5),
                                   span(ActionKind::ALLREDUCE_GRAD, 5, 5.25), span(ActionKind::STEP, 5.25, 6)};
  ActionSpan wait;
  wait.kind = kSpanWaitSends;
  wait.start = 6;
  wait.end = 6.5;
  spans.push_back(wait);
  const RankTimes t = split_spans(spans, 8.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeForward], 1.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeBackward], 2.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeBackwardInput], 0.5);
  EXPECT_DOUBLE_EQ(t.s[kTimeBackwardWeight], 0.5);
  EXPECT_DOUBLE_EQ(t.s[kTimeWait], 1.0);  // the receive and the send wait
  EXPECT_DOUBLE_EQ(t.s[kTimeSend], 0.25);
  EXPECT_DOUBLE_EQ(t.s[kTimeReduce], 0.25);
  EXPECT_DOUBLE_EQ(t.s[kTimeStep], 0.75);
  EXPECT_DOUBLE_EQ(t.s[kTimeOther], 8.0 - 6.25);
  EXPECT_DOUBLE_EQ(t.bubble(), 1.0 - 4.0 / 8.0);
}

// 1F1B with unit costs drains in (m + S - 1)·(F + B) = (m + S - 1)·3 units; every rank idles
// (S - 1)·3 of them.
// CUDA: compute spans are device intervals (ActionSpan::device). The host's spans count
// only where the device was not computing, overlapping device spans (two streams) once,
// and the categories partition the wall.
ActionSpan device_span(ActionKind k, double start, double end) {
  ActionSpan s = span(k, start, end);
  s.device = 1;
  return s;
}

TEST(TimeAccounting, DeviceSpansArePartitionedWithTheHostSpans) {
  const std::vector<ActionSpan> spans = {
      device_span(ActionKind::F, 1, 3),            // issued at 0, run 1..3
      span(ActionKind::SEND_ACT, 0.5, 3.5),        // waits for the F: 0.5..1 and 3..3.5 are send
      span(ActionKind::RECV_GRAD, 3.5, 5),         // a true wait
      device_span(ActionKind::B, 5, 9),            // one stream
      device_span(ActionKind::Bw, 8, 10),          // another stream, overlapping 8..9: counts 9..10
      span(ActionKind::STEP, 6, 11)};              // host waits for the norm: only 10..11 is step
  const RankTimes t = split_spans(spans, 12.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeForward], 2.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeSend], 1.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeWait], 1.5);
  EXPECT_DOUBLE_EQ(t.s[kTimeBackward], 4.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeBackwardWeight], 1.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeStep], 1.0);
  EXPECT_DOUBLE_EQ(t.s[kTimeOther], 1.5);  // 0..0.5 and 11..12
  double sum = 0;
  for (int k = 0; k <= kTimeOther; ++k) sum += t.s[size_t(k)];
  EXPECT_DOUBLE_EQ(sum, 12.0);
  EXPECT_DOUBLE_EQ(t.bubble(), 1.0 - 7.0 / 12.0);
}

TEST(TimeAccounting, SimClockOfOneFOneBIsTheClosedForm) {
  const int S = 4, m = 8;
  ScheduleSpec spec;
  spec.kind = "1f1b";
  spec.ranks = S;
  spec.microbatches = m;
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule(spec, &compute).is_ok());
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  Config c;
  SimClock clock;
  std::vector<std::pair<int, int>> ranges = {{0, 1}, {1, 2}, {2, 3}, {3, 4}};
  ASSERT_TRUE(clock.init(c, lowered, ranges).is_ok());
  const SimClock::Segment& seg = clock.segment(lowered, false, m);
  EXPECT_DOUBLE_EQ(seg.makespan, (m + S - 1) * 3.0);
  ASSERT_EQ(seg.update_end.size(), 1u);
  EXPECT_DOUBLE_EQ(seg.update_end[0], seg.makespan);
  ASSERT_EQ(seg.planned_bubble.size(), size_t(S));
  for (double b : seg.planned_bubble) EXPECT_NEAR(b, double(S - 1) / (m + S - 1), 1e-12);
  EXPECT_EQ(&clock.segment(lowered, false, m), &seg);  // simulated once
  c.training.sim_costs = "/nonexistent/costs.json";
  const Status st = clock.init(c, lowered, ranges);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("training.sim_costs"), std::string::npos) << st.message();
}

// Interleaved 1F1B with v chunks per rank: each chunk costs 1/v, so the step takes
// 3·(m + (p - 1)/v) units, the same model's 1F1B time less the shrunken bubble.
TEST(TimeAccounting, SimClockChargesEachOfVChunksOneVth) {
  const int p = 2, v = 2, m = 8;
  ScheduleSpec spec;
  spec.kind = "interleaved_1f1b";
  spec.ranks = p;
  spec.chunks = v;
  spec.microbatches = m;
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule(spec, &compute).is_ok());
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  SimClock clock;
  ASSERT_TRUE(clock.init(Config{}, lowered, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}).is_ok());
  EXPECT_DOUBLE_EQ(clock.segment(lowered, false, m).makespan, 3.0 * (m + double(p - 1) / v));
}

TEST(TimeAccounting, TargetCrossingsAreTheFirstEvaluationAtOrBelowEachTarget) {
  const std::string path = ::testing::TempDir() + "/metrics_tta.jsonl";
  std::ofstream(path) << "{\"step\":0,\"tokens\":0,\"time_s\":0.5,\"val_loss\":5.0,\"sim_time\":0}\n"
                         "{\"step\":1,\"tokens\":64,\"time_s\":1.0,\"loss\":4.0,\"sim_time\":3,\"time_split\":{\"wall_s\":[9]}}\n"
                         "{\"step\":1,\"tokens\":64,\"time_s\":1.25,\"val_loss\":null,\"sim_time\":3}\n"
                         "{\"step\":2,\"tokens\":128,\"time_s\":2.0,\"val_loss\":3.5,\"sim_time\":6}\n"
                         "{\"step\":3,\"tokens\":192,\"time_s\":3.0,\"val_loss\":3.75,\"sim_time\":9}\n"
                         "{\"step\":4,\"tokens\":256,\"time_s\":4.0,\"val_loss\":3.0,\"sim_time\":12}\n";
  const std::vector<TargetCrossing> t = target_crossings(path, {3.75, 3.5, 3.0, 2.0});
  ASSERT_EQ(t.size(), 4u);
  EXPECT_TRUE(t[0].reached);
  EXPECT_EQ(t[0].step, 2);  // 3.5 <= 3.75 first at step 2, not the later 3.75
  EXPECT_EQ(t[1].step, 2);
  EXPECT_EQ(t[1].tokens, 128);
  EXPECT_DOUBLE_EQ(t[1].time_s, 2.0);
  EXPECT_DOUBLE_EQ(t[1].sim_time, 6.0);
  EXPECT_EQ(t[2].step, 4);
  EXPECT_DOUBLE_EQ(t[2].val_loss, 3.0);
  EXPECT_FALSE(t[3].reached);
  const std::string json = target_crossings_json(t);
  EXPECT_NE(json.find("{\"target_val_loss\":2,\"reached\":false}"), std::string::npos) << json;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace pt
