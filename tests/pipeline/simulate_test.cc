// Simulator: cost-model timing (per-stage costs, p2p latency), in-flight counting for split
// backwards, the Chrome trace, and the acceptance performance bound: 1F1B with S=1024, m=4096 (8M
// compute actions, ~25M lowered) generated + lowered + validated + simulated (without recording the
// per-action timeline). The acceptance bound (< 2 s) is shown by the benchmark command in
// docs/results/plan_scaling.md, not by this test: a timed unit test on a shared 2-core CI machine
// would be flaky. Here a loose CPU-time guard (10x the target) catches complexity regressions
// (an accidental quadratic pass takes minutes at this size); the times are printed.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

using testing_util::plan_or_fail;

TEST(Simulate, CostModelWithLatencyMatchesHandComputation) {
  // 2 stages, m=1: F0 (2) -> latency (0.5) -> F1 (3) -> B1 (4+1) -> latency -> B0 (1+1).
  testing_util::Planned p = plan_or_fail({"1f1b", 2, 1, 1, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  CostModel c;
  c.forward = {2, 3};
  c.backward_input = {1, 4};
  c.backward_weight = {1, 1};
  c.p2p_latency = 0.5;
  SimResult r;
  ASSERT_TRUE(simulate(p.lowered, c, &r).is_ok());
  EXPECT_DOUBLE_EQ(r.makespan, 2 + 0.5 + 3 + 5 + 0.5 + 2);
  EXPECT_DOUBLE_EQ(r.busy[0], 4);
  EXPECT_DOUBLE_EQ(r.busy[1], 8);
  EXPECT_DOUBLE_EQ(r.idle[0], r.makespan - 4);
  EXPECT_NEAR(r.bubble_fraction, (2 * r.makespan - 12) / (2 * r.makespan), 1e-12);
}

TEST(Simulate, LatencyStretchesOneFOneBByTheCriticalPathHops) {
  // Uniform costs plus latency L: each of the 2(S-1) hops on the fill/drain critical path costs L
  // more.
  const int S = 4, m = 8;
  testing_util::Planned p = plan_or_fail({"1f1b", S, 1, m, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  SimResult r;
  ASSERT_TRUE(simulate(p.lowered, CostModel::uniform(S, 1, 1, 1, 0.25), &r).is_ok());
  EXPECT_GE(r.makespan, 3.0 * (m + S - 1) + 2 * (S - 1) * 0.25 - 1e-12);
  EXPECT_GT(r.makespan, p.sim.makespan);
}

TEST(Simulate, SplitBackwardCountsInFlightUntilBw) {
  // ZB-H1 stage 0 of 4 holds 3 warm-up + 1 activations like 1F1B, plus up to 0 held-back W's: 4.
  // The last stage holds back S-1 = 3 W's on top of its 1: also 4 = 1F1B's peak (memory-neutral).
  testing_util::Planned p = plan_or_fail({"zb_h1", 4, 1, 8, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (int st = 0; st < 4; ++st) EXPECT_EQ(p.sim.peak_in_flight_stage[st], 4) << "stage " << st;
  testing_util::Planned ref = plan_or_fail({"1f1b", 4, 1, 8, 0});
  EXPECT_EQ(*std::max_element(p.sim.peak_in_flight.begin(), p.sim.peak_in_flight.end()),
            *std::max_element(ref.sim.peak_in_flight.begin(), ref.sim.peak_in_flight.end()));
}

TEST(Simulate, ChromeTraceHasOneEventPerComputeAction) {
  testing_util::Planned p = plan_or_fail({"1f1b", 3, 1, 4, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string json = chrome_trace_json(p.lowered, p.sim, 1000.0);
  EXPECT_EQ(json.rfind("{\"traceEvents\":[", 0), 0u);
  EXPECT_EQ(json.substr(json.size() - 2), "]}");
  size_t events = 0;
  for (size_t pos = json.find("\"ph\":\"X\""); pos != std::string::npos;
       pos = json.find("\"ph\":\"X\"", pos + 1)) {
    ++events;
  }
  EXPECT_EQ(events, 3u * 4u * 2u);
  // Rank 2 (last stage) runs F0 of stage 2 at t=2 units = 2000 us.
  EXPECT_NE(
      json.find(
          "{\"name\":\"F0 s2\",\"ph\":\"X\",\"ts\":2000.000,\"dur\":1000.000,\"pid\":0,\"tid\":2}"),
      std::string::npos)
      << json.substr(0, 400);
  const std::string path = ::testing::TempDir() + "pipeline_trace_test.json";
  ASSERT_TRUE(write_chrome_trace(path, p.lowered, p.sim, 1000.0).is_ok());
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(ss.str(), json);
  EXPECT_FALSE(write_chrome_trace("/nonexistent-dir/x.json", p.lowered, p.sim, 1.0).is_ok());
}

TEST(Simulate, RejectsCostModelOfWrongSize) {
  testing_util::Planned p = plan_or_fail({"1f1b", 2, 1, 2, 0});
  SimResult r;
  Status st = simulate(p.lowered, CostModel::uniform(3), &r);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("cost model"), std::string::npos) << st.message();
}

TEST(Simulate, TimelineGridCutsWideRows) {
  testing_util::Planned p = plan_or_fail({"gpipe", 2, 1, 16, 0});
  GridOptions g;
  g.max_columns = 10;
  const std::string grid = format_timeline(p.lowered, p.sim, g);
  // Two-digit micro-batches widen every cell to 3 characters.
  EXPECT_EQ(grid.substr(0, 5 + 30 + 4), "GPU0| F0 F1 F2 F3 F4 F5 F6 F7 F8 F9 ...");
}

// CPU seconds of this process (user + system, so page faults count): unlike wall time it does not
// grow when other jobs share the 2-core build machine.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

TEST(Performance, OneFOneB1024Stages4096MicrobatchesUnderTwoSeconds) {
  const double cpu0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule({"1f1b", 1024, 1, 4096, 0}, &compute).is_ok());
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  const auto t2 = std::chrono::steady_clock::now();
  Status st = validate_lowered(lowered);
  ASSERT_TRUE(st.is_ok()) << st.message().substr(0, 2000);
  const auto t3 = std::chrono::steady_clock::now();
  // The per-action timeline (16 bytes x 25M actions) is for grids and traces, which nobody draws at
  // this size.
  SimResult r;
  SimOptions no_timeline;
  no_timeline.record_timeline = false;
  ASSERT_TRUE(simulate(lowered, CostModel::uniform(1024), &r, no_timeline).is_ok());
  const auto t4 = std::chrono::steady_clock::now();
  const double cpu_ms = 1e3 * (process_cpu_seconds() - cpu0);
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::printf(
      "S=1024 m=4096 1f1b: %lld actions lowered; build %.0f ms, lower %.0f ms, validate %.0f ms, "
      "simulate %.0f ms, total %.0f ms wall, %.0f ms CPU\n",
      static_cast<long long>(num_actions(lowered)), ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4),
      ms(t0, t4), cpu_ms);
  EXPECT_DOUBLE_EQ(r.makespan, 3.0 * (4096 + 1024 - 1));
  EXPECT_EQ(r.peak_in_flight[0], 1024);
  EXPECT_LT(cpu_ms, 20000.0)
      << "generate + lower + validate + simulate took > 10x the 2 s target: a complexity regression?";
  // For information: the same simulation recording the full timeline.
  SimResult with_timeline;
  const auto t5 = std::chrono::steady_clock::now();
  ASSERT_TRUE(simulate(lowered, CostModel::uniform(1024), &with_timeline).is_ok());
  std::printf("simulate with timeline: %.0f ms\n", ms(t5, std::chrono::steady_clock::now()));
  EXPECT_EQ(with_timeline.makespan, r.makespan);
}

}  // namespace
}  // namespace pt
