// RPD (algorithms.md §5.3, §5.6 invariant 3) as data: the sampler's laws (the chosen block is
// uniform, every read delay lies in [0, min(delta, k)] and is uniform there, independently per
// block; cyclic and deterministic rules exactly), the segment lists a builder emits from those
// draws (one STEP per update, on the drawn block; F of every block at the stage-local version of
// the iterate x^{k - d_j}; Bx above the block, nothing below it), their lowering, validation and
// snapshot bound, and the rules a config is checked against. Chi-square tests use a fixed seed and
// the critical value at significance 0.001, so a failure means the law is broken, not bad luck.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "pipeline/schedules/delay_law.h"
#include "pipeline/schedules/rpd.h"
#include "pipeline/versions.h"
#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

ScheduleSpec rpd_spec(int S, int delay, int updates, int64_t first = 0) {
  ScheduleSpec s;
  s.kind = "rpd";
  s.ranks = S;
  s.microbatches = 1;
  s.segment_updates = updates;
  s.rpd_max_delay = delay;
  s.seed = 1337;
  s.first_update = first;
  return s;
}

// Pearson's statistic of `counts` against equal expected counts.
double chi_square(const std::vector<int64_t>& counts) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  const double e = double(n) / double(counts.size());
  double x = 0;
  for (int64_t c : counts) x += (double(c) - e) * (double(c) - e) / e;
  return x;
}

// Upper 0.001 quantiles of the chi-square law with df degrees of freedom.
double critical_001(int df) {
  static const std::map<int, double> q = {{3, 16.266}, {5, 20.515}, {7, 24.322}, {35, 66.619}};
  return q.at(df);
}

constexpr int64_t kDraws = 100000;

TEST(RpdSampler, ChosenBlockIsUniform) {
  for (int S : {4, 8}) {
    const ScheduleSpec spec = rpd_spec(S, 0, 1);
    std::vector<int64_t> counts(size_t(S), 0);
    for (int64_t k = 0; k < kDraws; ++k) ++counts[size_t(rpd_draw(spec, S, k).stage)];
    EXPECT_LT(chi_square(counts), critical_001(S - 1)) << "S = " << S;
  }
}

TEST(RpdSampler, ReadDelaysLieInRangeAndAreUniformAndIndependent) {
  const int S = 4, delta = 5;
  const ScheduleSpec spec = rpd_spec(S, delta, 1);
  std::vector<std::vector<int64_t>> per_block(size_t(S), std::vector<int64_t>(delta + 1, 0));
  std::vector<int64_t> pairs(size_t((delta + 1) * (delta + 1)), 0);  // (d_0, d_1)
  std::vector<std::vector<int>> seen_at_small_k(size_t(delta), std::vector<int>(delta + 1, 0));
  for (int64_t k = 0; k < kDraws; ++k) {
    const RpdDraw d = rpd_draw(spec, S, k);
    ASSERT_EQ(d.delays.size(), size_t(S));
    for (int j = 0; j < S; ++j) {
      const int dj = d.delays[size_t(j)];
      ASSERT_GE(dj, 0) << "k " << k;
      ASSERT_LE(dj, std::min<int64_t>(delta, k)) << "k " << k << " block " << j;
      if (k >= delta) ++per_block[size_t(j)][size_t(dj)];
    }
    if (k >= delta) ++pairs[size_t(d.delays[0] * (delta + 1) + d.delays[1])];
  }
  for (int j = 0; j < S; ++j) EXPECT_LT(chi_square(per_block[size_t(j)]), critical_001(delta)) << "block " << j;
  EXPECT_LT(chi_square(pairs), critical_001((delta + 1) * (delta + 1) - 1)) << "d_0, d_1 not independent";
  // Below delta the range is [0, k]: over many seeds every value of it appears.
  for (uint64_t seed = 0; seed < 400; ++seed) {
    ScheduleSpec s = spec;
    s.seed = seed;
    for (int k = 0; k < delta; ++k)
      for (int dj : rpd_draw(s, S, k).delays) ++seen_at_small_k[size_t(k)][size_t(dj)];
  }
  for (int k = 0; k < delta; ++k)
    for (int v = 0; v <= delta; ++v)
      EXPECT_EQ(seen_at_small_k[size_t(k)][size_t(v)] > 0, v <= k) << "k " << k << " delay " << v;
}

TEST(RpdSampler, CyclicAndDeterministicRulesAndPurity) {
  ScheduleSpec spec = rpd_spec(4, 2, 1);
  spec.rpd_stage_sampling = "cyclic";
  spec.rpd_delay_sampling = "deterministic";
  for (int64_t k = 0; k < 50; ++k) {
    const RpdDraw d = rpd_draw(spec, 4, k);
    EXPECT_EQ(d.stage, k % 4);
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(d.delays[size_t(j)], std::min<int64_t>({std::max(0, j - d.stage), 2, k})) << "k " << k << " j " << j;
  }
  const ScheduleSpec u = rpd_spec(4, 7, 1);
  ScheduleSpec other = u;
  other.seed = 99;
  int differ = 0;
  for (int64_t k = 0; k < 200; ++k) {
    const RpdDraw a = rpd_draw(u, 4, k), b = rpd_draw(u, 4, k);
    EXPECT_EQ(a.stage, b.stage);
    EXPECT_EQ(a.delays, b.delays);
    const RpdDraw c = rpd_draw(other, 4, k);
    differ += c.stage != a.stage || c.delays != a.delays;
  }
  EXPECT_GT(differ, 150) << "the seed must change the draws";
}

// The list of the segment [first, first + N) against the draws, rank by rank.
void check_segment(const ScheduleSpec& spec) {
  const int S = spec.ranks, N = spec.segment_updates;
  const testing_util::Planned p = testing_util::plan_or_fail(spec);
  ASSERT_EQ(p.compute.microbatches, N);
  EXPECT_TRUE(p.lowered.partial_backward);
  ASSERT_TRUE(check_version_reads(p.lowered).is_ok());
  // Expected stage-local versions: version[j][i] = updates of block j among the segment's first i.
  std::vector<std::vector<int>> version(size_t(S), std::vector<int>(size_t(N) + 1, 0));
  std::vector<std::vector<Action>> want(static_cast<size_t>(S));
  for (int i = 0; i < N; ++i) {
    const RpdDraw d = rpd_draw(spec, S, spec.first_update + i);
    for (int j = 0; j < S; ++j) {
      const int read = i - std::min(d.delays[size_t(j)], i);  // the history starts at the segment
      Action f{ActionKind::F, 0, j, i, -1, version[size_t(j)][size_t(read)]};
      want[size_t(j)].push_back(f);
      if (j > d.stage) want[size_t(j)].push_back(Action{ActionKind::Bx, 0, j, i, -1, f.version});
      if (j == d.stage) {
        want[size_t(j)].push_back(Action{ActionKind::B, 0, j, i, -1, f.version});
        want[size_t(j)].push_back(Action{ActionKind::ALLREDUCE_GRAD, kGroupData, j, -1, -1, 0});
        want[size_t(j)].push_back(Action{ActionKind::STEP, 0, j, -1, -1, 0});
      }
      version[size_t(j)][size_t(i) + 1] = version[size_t(j)][size_t(i)] + (j == d.stage);
    }
  }
  for (int r = 0; r < S; ++r) {
    ASSERT_EQ(p.compute.per_rank[size_t(r)].size(), want[size_t(r)].size()) << "rank " << r;
    for (size_t t = 0; t < want[size_t(r)].size(); ++t)
      EXPECT_EQ(format_action(p.compute.per_rank[size_t(r)][t]), format_action(want[size_t(r)][t]))
          << "rank " << r << " tick " << t;
  }
  // One activation at a time per stage: a forward-only F and an input-gradient-only Bx free theirs.
  for (int st = 0; st < S; ++st) EXPECT_EQ(p.sim.peak_in_flight_stage[size_t(st)], 1) << "stage " << st;
  // A ring of at most min(delta, N - 1) + 1 versions per stage is alive.
  const std::vector<int> peaks = peak_live_versions(p.lowered);
  for (int st = 0; st < S; ++st) EXPECT_LE(peaks[size_t(st)], std::min(spec.rpd_max_delay, N - 1) + 1) << "stage " << st;
  // The record: one applied gradient per update, on the drawn block.
  int applied = 0;
  for (const VersionRecord& r : versions_from_schedule(p.lowered)) {
    if (r.applied < 0) continue;
    ++applied;
    EXPECT_EQ(r.stage, rpd_draw(spec, S, spec.first_update + r.microbatch).stage);
  }
  EXPECT_EQ(applied, N);
}

TEST(RpdSchedule, SegmentListsFollowTheDraws) {
  check_segment(rpd_spec(4, 3, 40));
  check_segment(rpd_spec(4, 3, 25, /*first=*/1000));  // a later segment continues the run's draws
  check_segment(rpd_spec(2, 0, 10));
  check_segment(rpd_spec(8, 20, 60, 7));
  ScheduleSpec c = rpd_spec(4, 3, 16);
  c.rpd_stage_sampling = "cyclic";
  c.rpd_delay_sampling = "deterministic";
  check_segment(c);
  ScheduleSpec one = rpd_spec(1, 2, 5);  // one stage: plain SGD
  check_segment(one);
  ScheduleSpec pd = rpd_spec(4, 14, 30, 20);
  pd.rpd_stage_sampling = pd.rpd_delay_sampling = "pipedream";
  check_segment(pd);
}

ScheduleSpec pipedream_spec(int S, int delay) {
  ScheduleSpec s = rpd_spec(S, delay, 1);
  s.rpd_stage_sampling = s.rpd_delay_sampling = "pipedream";
  return s;
}

// §5.2: PipeDream's steady-state global delay reaches exactly S^2 - S/2 (even S), and every stage
// updates once per micro-batch; the replayed order is a prefix of an endless run's, so a later
// segment's draws continue it.
TEST(RpdSampler, PipeDreamReplayFollowsTheDelayLawAndContinuesAcrossSegments) {
  for (int S : {2, 4, 6}) {
    const int64_t K = 40 * S * S;
    std::vector<RpdDraw> all;
    ASSERT_TRUE(rpd_draws(pipedream_spec(S, 100000), S, 0, K, &all).is_ok());
    int max_delay = 0;
    std::vector<int64_t> per_stage(size_t(S), 0);
    for (int64_t k = K / 2; k < K - 4 * S * S; ++k) {  // steady state
      for (int d : all[size_t(k)].delays) max_delay = std::max(max_delay, d);
      ++per_stage[size_t(all[size_t(k)].stage)];
    }
    EXPECT_EQ(max_delay, S * S - S / 2) << "S = " << S;
    const double each = double(K / 2 - 4 * S * S) / S;
    for (int s = 0; s < S; ++s) EXPECT_NEAR(double(per_stage[size_t(s)]), each, S) << "S = " << S << " stage " << s;
    std::vector<RpdDraw> later;
    ASSERT_TRUE(rpd_draws(pipedream_spec(S, 100000), S, K / 3, K / 5, &later).is_ok());
    for (size_t i = 0; i < later.size(); ++i) {
      EXPECT_EQ(later[i].stage, all[size_t(K / 3) + i].stage) << "S = " << S << " k " << K / 3 + int64_t(i);
      EXPECT_EQ(later[i].delays, all[size_t(K / 3) + i].delays) << "S = " << S << " k " << K / 3 + int64_t(i);
    }
  }
  std::vector<RpdDraw> capped;
  ASSERT_TRUE(rpd_draws(pipedream_spec(4, 5), 4, 0, 400, &capped).is_ok());
  for (const RpdDraw& d : capped)
    for (int x : d.delays) EXPECT_LE(x, 5);
}

// With delays uncapped, the replay reads what PipeDream (weight stashing, an update per backward)
// reads: update k (PipeDream's backward of micro-batch i on stage s) forwards every block j at the
// version PipeDream's forward of i on stage j read.
TEST(RpdSchedule, PipeDreamReplayReadsPipeDreamsVersions) {
  const int S = 4, N = 200;
  ScheduleSpec rpd = pipedream_spec(S, 1000);
  rpd.segment_updates = N;
  const testing_util::Planned p = testing_util::plan_or_fail(rpd);
  ScheduleSpec pd;
  pd.kind = "pipedream";
  pd.ranks = S;
  pd.microbatches = 1;
  pd.segment_updates = 2 * N / S + 4 * S;
  Schedule pd_list;
  ASSERT_TRUE(make_schedule(pd, &pd_list).is_ok());
  std::map<std::pair<int, int>, int> pd_forward;  // (micro-batch, stage) -> version its F read
  for (const VersionRecord& r : versions_from_schedule(pd_list)) pd_forward[{r.microbatch, r.stage}] = r.forward;
  std::vector<PipeDreamUpdate> order;
  ASSERT_TRUE(pipedream_update_order(S, N, &order).is_ok());
  int checked = 0;
  for (const VersionRecord& r : versions_from_schedule(p.lowered)) {
    const int i = order[size_t(r.microbatch)].microbatch;
    EXPECT_EQ(r.forward, pd_forward.at({i, r.stage})) << "update " << r.microbatch << " stage " << r.stage;
    ++checked;
  }
  EXPECT_EQ(checked, N * S);
}

TEST(RpdSchedule, WithDelayZeroEveryReadIsTheLiveVersion) {
  const testing_util::Planned p = testing_util::plan_or_fail(rpd_spec(4, 0, 30));
  EXPECT_EQ(peak_live_versions(p.lowered), std::vector<int>(4, 1));
  for (const VersionRecord& r : versions_from_schedule(p.lowered))
    if (r.applied >= 0) EXPECT_EQ(r.applied, r.forward) << "mb " << r.microbatch;
}

void expect_rejected(const ScheduleSpec& s, const std::string& text) {
  const Status st = check_schedule_spec(s);
  ASSERT_FALSE(st.is_ok()) << text;
  EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
}

TEST(RpdSchedule, ChecksNameTheKeyAndWhatIsAllowed) {
  ScheduleSpec s = rpd_spec(4, 2, 1);
  EXPECT_TRUE(check_schedule_spec(s).is_ok());
  s.microbatches = 2;
  expect_rejected(s, "training.microbatches");
  s = rpd_spec(4, -1, 1);
  expect_rejected(s, "schedule.rpd.max_delay must be >= 0");
  s = rpd_spec(4, 2, 1);
  s.rpd_stage_sampling = "random";
  expect_rejected(s, "schedule.rpd.stage_sampling = 'random' is not one of: uniform, cyclic, pipedream");
  s = rpd_spec(4, 2, 1);
  s.rpd_delay_sampling = "random";
  expect_rejected(s, "schedule.rpd.delay_sampling = 'random' is not one of: uniform, deterministic, pipedream");
  s = rpd_spec(4, 2, 1);
  s.chunks = 2;
  expect_rejected(s, "schedule.chunks");
  s = rpd_spec(4, 2, 1);
  s.tie_embeddings = true;
  expect_rejected(s, "model.tie_embeddings");
  s = rpd_spec(4, 2, 1);
  s.paci_mode = "mem";
  expect_rejected(s, "schedule.paci.mode");
  s = rpd_spec(4, 2, 1);
  s.paci_allowed_lagging = {1, 1, 1, 1};
  expect_rejected(s, "schedule.paci.allowed_lagging");
  ScheduleSpec other;
  other.kind = "pipedream";
  other.ranks = 4;
  other.rpd_max_delay = 3;
  expect_rejected(other, "schedule.rpd.* (max_delay, stage_sampling, delay_sampling) applies to schedule.kind: rpd");
  other.rpd_max_delay = 0;
  other.rpd_stage_sampling = "cyclic";
  expect_rejected(other, "schedule.rpd.*");
}

}  // namespace
}  // namespace pt
