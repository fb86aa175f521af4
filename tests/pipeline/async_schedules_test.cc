// Asynchronous schedules (algorithms.md §1.4 PipeDream, §1.5 PipeDream-2BW, §2 AMDP, §3 PACI): the
// generated lists are lowered, validated and event-simulated with F=1, B=2, and every invariant of
// §1.4, §1.5, §2.4 and §3.5 that the IR and the simulator can see is asserted, together with the
// documented timelines (§3.3 PACI and flush, §2.2 AMDP S=4) reproduced op for op.
#include <gtest/gtest.h>

#include <cstdio>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "pipeline/schedules/async_common.h"
#include "tests/pipeline/async_test_util.h"

namespace pt {
namespace {

using async_test::Op;
using async_test::plan;
using async_test::Planned;
using async_test::spec;

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Every rank computes without a gap over [t0, t1) (steady state).
void expect_no_idle(const Planned& p, double t0, double t1, const std::string& what) {
  ASSERT_LT(t0, t1) << what;
  for (int r = 0; r < p.lowered.num_ranks; ++r) {
    EXPECT_DOUBLE_EQ(async_test::busy_in(p, r, t0, t1), t1 - t0)
        << what << ": rank " << r << " idles in the steady state [" << t0 << ", " << t1 << ")\n"
        << (r == 0 ? format_timeline(p.lowered, p.sim) : std::string());
  }
}

// Steady state of a one-stage-per-rank async schedule: from the moment the first micro-batch
// admitted after the warm-up (id S) reaches the last stage (PipeDream's uncapped inner stages leave
// holes until then) to the end of stage 0's last forward (the drain follows).
void expect_no_steady_idle(const Planned& p, const std::string& what) {
  const int S = p.lowered.num_stages;
  double t0 = -1;
  {
    const int r = p.lowered.stage_to_rank[size_t(S - 1)];
    const auto& list = p.lowered.per_rank[size_t(r)];
    for (size_t i = 0; i < list.size() && t0 < 0; ++i)
      if (list[i].kind == ActionKind::F && list[i].microbatch == S)
        t0 = p.sim.timeline[size_t(r)][i].start;
  }
  const double t1 = async_test::first_start(p, ActionKind::F, 0, /*last=*/true) + 1;
  expect_no_idle(p, t0, t1, what);
}

// ---------------------------------------------------------------------------------------------
// PACI (§3)

// §3.3 states "PACI 56 vs flush 83 units", but its own PACI timeline (reproduced cell for cell in
// the next test) is 57 columns wide: the stated numbers are the index of the last busy column
// (makespan - 1). Both runs here end one unit later than stated, so the gap of 27 units is the doc's.
TEST(AsyncPaci, MakespanS4A4SixteenPaciVersusFlush) {
  Planned paci = plan(spec("paci", 4, 4, 4));
  Planned flush = plan(spec("paci_flush", 4, 4, 4));
  ASSERT_TRUE(paci.ok && flush.ok);
  EXPECT_EQ(paci.compute.microbatches, 16);
  EXPECT_DOUBLE_EQ(paci.sim.makespan - 1, 56);
  EXPECT_DOUBLE_EQ(flush.sim.makespan - 1, 83);
  // Flush pays (a+S-1)(F+B) = 21 per mini-batch, plus the last drain's (S-1) units.
  EXPECT_DOUBLE_EQ(flush.sim.makespan, 4 * 21 + 0);
}

TEST(AsyncPaci, ReproducesTheSection33Timeline) {
  const char* doc[] = {
      "S0|F0 F1 F2 F3  .  .  .  .  .  . B0 B0 F4 B1 B1 F5 B2 B2 F6 B3 B3|F7 B4 B4 F8 B5 B5 F9 B6 B6 "
      "F10B7 B7|F11B8 B8 F12B9 B9 F13B10B10F14B11B1|F15B12B12 . B13B13 . B14B14 . B15B1|",
      "S1| . F0 F1 F2  .  .  .  . B0 B0 F3 B1 B1 F4 B2 B2 F5 B3 B3|F6 B4 B4 F7 B5 B5 F8 B6 B6 F9 B7 "
      "B7|F10B8 B8 F11B9 B9 F12B10B10F13B11B1|F14B12B12F15B13B13 . B14B14 . B15B1|",
      "S2| .  . F0 F1  .  . B0 B0 F2 B1 B1 F3 B2 B2 F4 B3 B3|F5 B4 B4 F6 B5 B5 F7 B6 B6 F8 B7 B7|F9 "
      "B8 B8 F10B9 B9 F11B10B10F12B11B1|F13B12B12F14B13B13F15B14B14 . B15B1|",
      "S3| .  .  . F0 B0 B0 F1 B1 B1 F2 B2 B2 F3 B3 B3|F4 B4 B4 F5 B5 B5 F6 B6 B6 F7 B7 B7|F8 B8 B8 "
      "F9 B9 B9 F10B10B10F11B11B1|F12B12B12F13B13B13F14B14B14F15B15B1|",
  };
  Planned p = plan(spec("paci", 4, 4, 4));
  ASSERT_TRUE(p.ok);
  for (int r = 0; r < 4; ++r) {
    const auto want = async_test::parse_doc_row(doc[r]);
    const auto got = async_test::sim_ops(p, r);
    EXPECT_EQ(got, want) << "stage " << r << "\n got: " << async_test::show(got)
                         << "\nwant: " << async_test::show(want);
    // '|' = STEP right after backwards 3, 7, 11, 15 of the stage (a = 4), after its data-parallel
    // ALLREDUCE_GRAD.
    const auto& list = p.compute.per_rank[size_t(r)];
    int backs = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].kind == ActionKind::B) ++backs;
      const bool step_next = i + 2 < list.size() && list[i + 1].kind == ActionKind::ALLREDUCE_GRAD &&
                             list[i + 2].kind == ActionKind::STEP;
      if (list[i].kind == ActionKind::B) EXPECT_EQ(step_next, backs % 4 == 0) << "stage " << r;
    }
  }
  // Stage 0: 4,5,6 / 8,9,10 / 12,13,14 forward at v and backward at v+1; 7, 11, 15 do not.
  std::map<int, int> drift0;
  for (const VersionRecord& v : versions_from_schedule(p.compute))
    if (v.stage == 0) drift0[v.microbatch] = v.backward - v.forward;
  for (int i = 0; i < 16; ++i) {
    const bool mismatch = i >= 4 && i % 4 != 3;
    EXPECT_EQ(drift0[i], mismatch ? 1 : 0) << "micro-batch " << i;
  }
}

TEST(AsyncPaci, FlushReproducesTheSection33FlushRowsAndEquals1F1B) {
  Planned p = plan(spec("paci_flush", 4, 4, 4));
  ASSERT_TRUE(p.ok);
  const auto s0 = async_test::parse_doc_row(
      "S0|F0 F1 F2 F3  .  .  .  .  .  . B0 B0  . B1 B1  . B2 B2  . B3 B3|F4 F5 F6 F7  .  .  .  .  .  . "
      "B4 B4  . B5 B5");
  const auto s3 = async_test::parse_doc_row(
      "S3| .  .  . F0 B0 B0 F1 B1 B1 F2 B2 B2 F3 B3 B3| .  .  .  .  .  .  .  .  . F4 B4 B4 F5 B5 B5");
  auto got0 = async_test::sim_ops(p, 0), got3 = async_test::sim_ops(p, 3);
  got0.resize(s0.size());
  got3.resize(s3.size());
  EXPECT_EQ(got0, s0) << async_test::show(got0);
  EXPECT_EQ(got3, s3) << async_test::show(got3);
  // Per mini-batch k, every rank's list is 1F1B's with ids shifted by 4k, then 1F1B's step
  // (ALLREDUCE_GRAD over the data-parallel group, STEP).
  Schedule ref;
  ASSERT_TRUE(make_schedule({"1f1b", 4, 1, 4, 0}, &ref).is_ok());
  for (int r = 0; r < 4; ++r) {
    std::vector<Action> want;
    for (int k = 0; k < 4; ++k) {
      for (Action a : ref.per_rank[size_t(r)]) {
        if (is_compute(a.kind)) {
          a.microbatch += 4 * k;
          a.version = k;
        }
        want.push_back(a);
      }
    }
    EXPECT_EQ(p.compute.per_rank[size_t(r)], want) << "rank " << r;
  }
  const auto rec = versions_from_schedule(p.compute);
  EXPECT_TRUE(check_drift_zero(rec).is_ok()) << check_drift_zero(rec).message();
  EXPECT_TRUE(check_paci_invariants(rec, 4, 4).is_ok());
}

TEST(AsyncPaci, InvariantsHoldForS4AndS8AcrossAccumulation) {
  for (int S : {4, 8}) {
    for (int a : {1, 2, 3, 4, 8, 16}) {
      const std::string what = "S=" + std::to_string(S) + " a=" + std::to_string(a);
      Planned p = plan(spec("paci", S, a, std::max(5, ceil_div(6 * S, a))));
      ASSERT_TRUE(p.ok) << what;
      // Drift law, step after backwards a, 2a, ... (§3.5 items 2, 3), on the pure record.
      const auto rec = versions_from_schedule(p.compute);
      Status st = check_paci_invariants(rec, S, a);
      EXPECT_TRUE(st.is_ok()) << what << ": " << st.message();
      // The bound is reached (the law is tight, §3.3) on stage 0 once there is a steady state.
      const auto sum = summarize_versions(rec, S);
      EXPECT_EQ(sum[0].max_drift, ceil_div(S - 1, a)) << what;
      EXPECT_EQ(sum[size_t(S - 1)].max_drift, 0) << what;
      // One weight copy: nothing ever reads an old version.
      for (int v : peak_live_versions(p.compute)) EXPECT_EQ(v, 1) << what;
      // in_flight_s <= S-s (§3.5 item 1).
      for (int s = 0; s < S; ++s) EXPECT_LE(p.sim.peak_in_flight_stage[size_t(s)], S - s) << what;
      // Step counts differ by <= ceil((S-1)/a) at every instant (§3.5 item 5).
      std::vector<std::vector<double>> step_times(static_cast<size_t>(S));
      std::set<double> instants;
      for (int r = 0; r < S; ++r) {
        const auto& list = p.lowered.per_rank[size_t(r)];
        for (size_t i = 0; i < list.size(); ++i) {
          instants.insert(p.sim.timeline[size_t(r)][i].end);
          if (list[i].kind == ActionKind::STEP)
            step_times[size_t(list[i].stage)].push_back(p.sim.timeline[size_t(r)][i].end);
        }
      }
      for (double t : instants) {
        int lo = 1 << 30, hi = 0;
        for (int s = 0; s < S; ++s) {
          const int n = int(std::upper_bound(step_times[size_t(s)].begin(),
                                             step_times[size_t(s)].end(), t) -
                            step_times[size_t(s)].begin());
          lo = std::min(lo, n);
          hi = std::max(hi, n);
        }
        EXPECT_LE(hi - lo, ceil_div(S - 1, a)) << what << " at t=" << t;
      }
      expect_no_steady_idle(p, what);
    }
  }
}

TEST(AsyncPaci, SingleStageIsPlainAccumulation) {
  Planned p = plan(spec("paci", 1, 4, 3));
  ASSERT_TRUE(p.ok);
  std::vector<Action> want;
  for (int i = 0; i < 12; ++i) {
    Action f;
    f.stage = 0;
    f.microbatch = i;
    f.version = i / 4;
    want.push_back(f);
    Action b = f;
    b.kind = ActionKind::B;
    want.push_back(b);
    if (i % 4 == 3) {
      Action s;
      s.kind = ActionKind::ALLREDUCE_GRAD;
      s.group = kGroupData;
      s.microbatch = -1;
      want.push_back(s);
      s.kind = ActionKind::STEP;
      s.group = 0;
      want.push_back(s);
    }
  }
  EXPECT_EQ(p.compute.per_rank[0], want);
}

TEST(AsyncPaci, AllowedLaggingAndModeAreHonouredAndChecked) {
  ScheduleSpec sp = spec("paci", 4, 4, 4);
  sp.paci_allowed_lagging = {2, 2, 2, 1};
  Planned p = plan(sp);
  ASSERT_TRUE(p.ok);
  for (int s = 0; s < 4; ++s)
    EXPECT_LE(p.sim.peak_in_flight_stage[size_t(s)], sp.paci_allowed_lagging[size_t(s)]);
  EXPECT_TRUE(check_paci_invariants(versions_from_schedule(p.compute), 4, 4).is_ok());
  EXPECT_GT(p.sim.makespan, 56);  // less lag, less overlap

  sp.paci_mode = "mem";
  Schedule mem;
  ASSERT_TRUE(make_schedule(sp, &mem).is_ok());
  EXPECT_TRUE(mem.recompute_in_backward);
  EXPECT_EQ(mem.per_rank, p.compute.per_rank);  // same order, only the executor differs
  EXPECT_FALSE(p.compute.recompute_in_backward);

  Schedule out;
  for (auto bad : std::vector<std::vector<int>>{{5, 3, 2, 1}, {4, 3, 2, 0}, {4, 3, 3, 1}, {4, 3}}) {
    sp.paci_allowed_lagging = bad;
    Status st = make_schedule(sp, &out);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("schedule.paci.allowed_lagging"), std::string::npos)
        << st.message();
  }
  sp.paci_allowed_lagging.clear();
  sp.paci_mode = "fast";
  Status st = make_schedule(sp, &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("schedule.paci.mode"), std::string::npos);
  sp.paci_mode = "perf";
  sp.microbatches = 0;
  st = make_schedule(sp, &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("training.microbatches"), std::string::npos) << st.message();
  sp.microbatches = 4;
  sp.segment_updates = 0;  // not a config key: the drain points give it
  st = make_schedule(sp, &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("segment_updates"), std::string::npos) << st.message();
}

// ---------------------------------------------------------------------------------------------
// PipeDream (§1.4) and PipeDream-2BW (§1.5)

TEST(AsyncPipeDream, StashingGivesDriftZeroAndSteadyDelaySMinus1MinusS) {
  for (int S : {4, 8}) {
    Planned p = plan(spec("pipedream", S, 1, 4 * S));
    ASSERT_TRUE(p.ok);
    const auto rec = versions_from_schedule(p.compute);
    Status st = check_pipedream_invariants(rec, S, 1);
    EXPECT_TRUE(st.is_ok()) << st.message() << "\n" << format_schedule(p.compute);
    EXPECT_TRUE(check_version_reads(p.compute).is_ok());
    // Stashing keeps up to S-s versions on stage s (weights of every in-flight micro-batch).
    const auto peaks = peak_live_versions(p.compute);
    EXPECT_EQ(peaks[0], S);
    EXPECT_EQ(peaks[size_t(S - 1)], 1);
    EXPECT_LE(p.sim.peak_in_flight_stage[0], S);  // NOAM = S
    expect_no_steady_idle(p, "pipedream S=" + std::to_string(S));
  }
  // With accumulation k: one STEP per k backwards, drift still 0.
  Planned p = plan(spec("pipedream", 4, 3, 4));
  ASSERT_TRUE(p.ok);
  Status st = check_pipedream_invariants(versions_from_schedule(p.compute), 4, 3);
  EXPECT_TRUE(st.is_ok()) << st.message();
}

TEST(AsyncPipeDream, TwoBwDelayExactlyOneAndTwoVersions) {
  for (int S : {4, 8}) {
    for (int m : {S, 2 * S}) {
      const std::string what = "S=" + std::to_string(S) + " m=" + std::to_string(m);
      Planned p = plan(spec("pipedream_2bw", S, m, 5));
      ASSERT_TRUE(p.ok) << what;
      const auto rec = versions_from_schedule(p.compute);
      Status st = check_2bw_invariants(rec, S, m);
      EXPECT_TRUE(st.is_ok()) << what << ": " << st.message();
      for (const VersionRecord& r : rec)
        if (r.microbatch >= m) EXPECT_EQ(r.applied - r.forward, 1) << what;
      const auto peaks = peak_live_versions(p.compute);
      EXPECT_EQ(*std::max_element(peaks.begin(), peaks.end()), 2) << what;
      EXPECT_TRUE(check_version_reads(p.compute).is_ok());
      expect_no_steady_idle(p, "pipedream_2bw " + what);
      // Same order as PipeDream with the same m (only the versions differ).
      Schedule pd;
      ASSERT_TRUE(make_schedule(spec("pipedream", S, m, 5), &pd).is_ok());
      for (int r = 0; r < S; ++r) {
        ASSERT_EQ(pd.per_rank[size_t(r)].size(), p.compute.per_rank[size_t(r)].size());
        for (size_t i = 0; i < pd.per_rank[size_t(r)].size(); ++i) {
          Action x = pd.per_rank[size_t(r)][i];
          x.version = p.compute.per_rank[size_t(r)][i].version;
          EXPECT_EQ(x, p.compute.per_rank[size_t(r)][i]);
        }
      }
    }
  }
  Schedule out;
  Status st = make_schedule(spec("pipedream_2bw", 4, 3, 2), &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("training.microbatches"), std::string::npos) << st.message();
}

// ---------------------------------------------------------------------------------------------
// AMDP (§2)

TEST(AsyncAmdp, PlacementIsABijectionPerPipelineWithDistinctReplicas) {
  for (int S = 2; S <= 32; S += 2) {
    Schedule s;
    ASSERT_TRUE(make_schedule(spec("amdp", S, S, 1), &s).is_ok()) << S;
    const int K = S / 2;
    EXPECT_EQ(s.pipelines, K);
    EXPECT_EQ(s.model_stages, S);
    EXPECT_EQ(s.num_stages, K * S);
    std::vector<int> hosted(size_t(S), 0);
    for (int p = 0; p < K; ++p) {
      std::set<int> gpus;
      for (int st = 0; st < S; ++st) gpus.insert(s.stage_to_rank[size_t(p * S + st)]);
      EXPECT_EQ(int(gpus.size()), S) << "S=" << S << " pipeline " << p;
    }
    for (int st = 0; st < S; ++st) {
      std::set<int> gpus;
      for (int p = 0; p < K; ++p) gpus.insert(s.stage_to_rank[size_t(p * S + st)]);
      EXPECT_EQ(int(gpus.size()), K) << "S=" << S << " stage " << st;
    }
    for (int v = 0; v < K * S; ++v) hosted[size_t(s.stage_to_rank[size_t(v)])]++;
    for (int g = 0; g < S; ++g) EXPECT_EQ(hosted[size_t(g)], K);
  }
  // The coded cases of §2.2.
  Schedule s8;
  ASSERT_TRUE(make_schedule(spec("amdp", 8, 8, 1), &s8).is_ok());
  const std::vector<int> want8 = {0, 1, 2, 3, 4, 5, 6, 7, 3, 2, 1, 0, 7, 6, 5, 4,
                                  4, 5, 6, 7, 0, 1, 2, 3, 7, 6, 5, 4, 3, 2, 1, 0};
  EXPECT_EQ(s8.stage_to_rank, want8);
  Schedule s4;
  ASSERT_TRUE(make_schedule(spec("amdp", 4, 4, 1), &s4).is_ok());
  EXPECT_EQ(s4.stage_to_rank, (std::vector<int>{0, 1, 2, 3, 3, 2, 1, 0}));
}

TEST(AsyncAmdp, ReproducesTheS4TimelineOfSection22) {
  const char* doc[] = {
      "GPU0|F0 F2  . F1 B1 B1 F3 B3 B3  . B0 B0 F4 F6 b2 b2 F5 B5 B5 UU F7 B7 B7 B4 B4 F8 F10b6 b6 F9 "
      "B9 B9 UU F11B11B11B8 B8  .  . b10b10",
      "GPU1| . F0 F1 F2 F3  . B1 B1 B0 B0 B3 B3 b2 b2 F4 F5 F6 F7 UU B5 B5 B4 B4 B7 B7 b6 b6 F8 F9 "
      "F10F11UU B9 B9 B8 B8 B11B11b10b10 .  .",
      "GPU2| . F1 F0 F3 F2  . B0 B0 B1 B1 B2 B2 b3 b3 F5 F4 F7 F6 UU B4 B4 B5 B5 B6 B6 b7 b7 F9 F8 "
      "F11F10UU B8 B8 B9 B9 B10B10b11b11 .  .",
      "GPU3|F1 F3  . F0 B0 B0 F2 B2 B2  . B1 B1 F5 F7 b3 b3 F4 B4 B4 UU F6 B6 B6 B5 B5 F9 F11b7 b7 F8 "
      "B8 B8 UU F10B10B10B9 B9  .  . b11b11",
  };
  Planned p = plan(spec("amdp", 4, 4, 3));
  ASSERT_TRUE(p.ok);
  for (int r = 0; r < 4; ++r) {
    const auto want = async_test::parse_doc_row(doc[r]);
    auto got = async_test::sim_ops(p, r);
    // The doc stops after the tail; the segment's final step slot follows it.
    ASSERT_EQ(got.size(), want.size() + 1) << async_test::show(got);
    EXPECT_EQ(got.back().label, "U");
    got.pop_back();
    EXPECT_EQ(got, want) << "GPU" << r << "\n got: " << async_test::show(got)
                         << "\nwant: " << async_test::show(want);
  }
}

TEST(AsyncAmdp, S4TwelveRoundsMakespan159WithNoSteadyIdle) {
  Planned p = plan(spec("amdp", 4, 4, 12));
  ASSERT_TRUE(p.ok);
  for (int r = 0; r < 4; ++r) {
    double last_compute = 0, compute = 0;
    const auto& list = p.lowered.per_rank[size_t(r)];
    for (size_t i = 0; i < list.size(); ++i) {
      if (!is_compute(list[i].kind)) continue;
      last_compute = std::max(last_compute, p.sim.timeline[size_t(r)][i].end);
      compute += p.sim.timeline[size_t(r)][i].end - p.sim.timeline[size_t(r)][i].start;
    }
    EXPECT_DOUBLE_EQ(compute, 144) << r;
    // Doc: 159 = 144 compute + 11 step slots + 4 warm-up/drain units, on every GPU (the final slot
    // after the tail is extra).
    EXPECT_DOUBLE_EQ(p.sim.makespan, 160) << r;
    EXPECT_DOUBLE_EQ(p.sim.busy[size_t(r)], 144);
    EXPECT_DOUBLE_EQ(p.sim.idle[size_t(r)], 160 - 144) << "11 + 1 slots + 4 warm-up/drain";
  }
}

// ≤ 2 consecutive forwards of a pipeline at its first stage between two of its backwards (§2.4
// item 2), in list order of the first stage.
void expect_at_most_two_forwards_in_a_row(const Schedule& s) {
  for (int p = 0; p < s.pipelines; ++p) {
    const int v = p * s.model_stages;
    int run = 0, worst = 0;
    for (const Action& a : s.per_rank[size_t(s.stage_to_rank[size_t(v)])]) {
      if (a.stage != v) continue;
      if (a.kind == ActionKind::F) worst = std::max(worst, ++run);
      if (a.kind == ActionKind::B) run = 0;
    }
    EXPECT_EQ(worst, 2) << s.name << " S=" << s.model_stages << " pipeline " << p;
  }
}

// Collectives (ALLREDUCE_GRAD, and STEP's owner broadcast) in the same order on every member of a
// replica group (ranks hosting the same model stages), as MPI requires; the groups are disjoint (the
// runner builds one communicator per group): exactly 2 of K ranks each (1 rank each at S = 2).
void expect_replica_collectives_in_the_same_order(const Schedule& s, const std::string& what) {
  const int S = s.model_stages;
  std::map<std::set<int>, std::vector<std::string>> group_order;
  std::map<std::set<int>, int> members;
  for (int r = 0; r < s.num_ranks; ++r) {
    std::set<int> hosted;
    std::vector<std::string> order;
    for (const Action& a : s.per_rank[size_t(r)]) {
      hosted.insert(a.stage % S);
      if (a.kind == ActionKind::ALLREDUCE_GRAD || a.kind == ActionKind::STEP)
        order.push_back((a.kind == ActionKind::STEP ? "S" : "R") + std::to_string(a.stage % S));
    }
    ++members[hosted];
    auto [it, inserted] = group_order.insert({hosted, order});
    EXPECT_TRUE(inserted || it->second == order) << what << ": rank " << r << " orders its collectives differently";
  }
  EXPECT_EQ(group_order.size(), 2u) << what;  // S = 4q: ranks = 0, 3 mod 4 and the rest; else even/odd
  std::set<int> seen;
  for (const auto& [hosted, n] : members) {
    EXPECT_EQ(n, s.pipelines) << what;
    for (int st : hosted) EXPECT_TRUE(seen.insert(st).second) << what << ": stage " << st << " in two groups";
  }
}

// §2.4 items 2, 3, 7 and the step accounting, for every even S in 2..32 (S=4: the reference table;
// S = 4q >= 8: the rule of the S=8 reference orders; S = 4q + 2: the general rule) and 1..3 rounds
// per iteration.
TEST(AsyncAmdp, InvariantsHoldForEveryEvenSUpTo32) {
  for (int S = 2; S <= 32; S += 2) {
    for (int rounds_per_iter : {1, 2, 3}) {
      const int m = S * rounds_per_iter;
      const std::string what = "S=" + std::to_string(S) + " m=" + std::to_string(m);
      Planned p = plan(spec("amdp", S, m, 4));
      ASSERT_TRUE(p.ok) << what;
      const auto rec = versions_from_schedule(p.compute);
      Status st = check_amdp_invariants(rec, S, S / 2, m);
      EXPECT_TRUE(st.is_ok()) << what << ": " << st.message();
      EXPECT_TRUE(check_version_reads(p.compute).is_ok()) << what;
      int drifted = 0;
      for (const VersionRecord& r : rec) drifted += r.backward != r.forward;
      EXPECT_GT(drifted, 0) << what << ": the one-step mismatch of §2.2 should occur";
      expect_at_most_two_forwards_in_a_row(p.compute);
      expect_replica_collectives_in_the_same_order(p.compute, what);
      // Every virtual stage steps segment_updates times, each step preceded by its all-reduce.
      for (int r = 0; r < S; ++r) {
        std::map<int, int> steps, reduces;
        for (const Action& a : p.compute.per_rank[size_t(r)]) {
          if (a.kind == ActionKind::ALLREDUCE_GRAD && (a.group & kGroupReplicas)) ++reduces[a.stage];
          if (a.kind == ActionKind::STEP) {
            EXPECT_EQ(reduces[a.stage], steps[a.stage] + 1) << what;
            ++steps[a.stage];
          }
        }
        EXPECT_EQ(int(steps.size()), S / 2) << what;
        for (auto [v, n] : steps) EXPECT_EQ(n, 4) << what << " stage " << v;
      }
    }
  }
}

// Steady-state idle per update of every rank, as `pipetrain plan` measures it: (idle over 2n updates
// - idle over n) / n with F=1, B=2, so warm-up and drain cancel out. `slot` = the step slot's length
// (0: plan's cost model, whose STEP is free; 1: the §2.2 timeline's "UU").
std::vector<double> steady_idle_per_update(int S, int m, double slot) {
  std::vector<double> idle[2];
  const int n = 6;
  for (int i = 0; i < 2; ++i) {
    Planned p = plan(spec("amdp", S, m, n * (i + 1)));
    EXPECT_TRUE(p.ok);
    CostModel c = async_test::unit_costs(p.lowered);
    c.step = slot / p.lowered.pipelines;
    SimResult sim;
    EXPECT_TRUE(simulate(p.lowered, c, &sim).is_ok());
    idle[i] = sim.idle;
  }
  std::vector<double> out;
  for (size_t r = 0; r < idle[0].size(); ++r) out.push_back((idle[1][r] - idle[0][r]) / n);
  return out;
}

// §2.4 item 6 at every even depth: the steady-state idle per update and rank is no larger than the
// reference orders' at S=4 and S=8 (the same m/S rounds per update), with a free or a 1-unit step slot.
TEST(AsyncAmdp, SteadyIdleAtEveryEvenSIsNoLargerThanTheReferenceOrders) {
  for (int rounds_per_iter : {1, 2}) {
    for (double slot : {0.0, 1.0}) {
      double reference = 0;
      for (int S : {4, 8})
        for (double v : steady_idle_per_update(S, S * rounds_per_iter, slot)) reference = std::max(reference, v);
      EXPECT_GT(reference, 0.5) << "the reference orders idle 1 unit per round";  // 1/3 steps: 1e-9 slack below
      for (int S = 2; S <= 32; S += 2) {
        const auto idle = steady_idle_per_update(S, S * rounds_per_iter, slot);
        for (size_t r = 0; r < idle.size(); ++r)
          EXPECT_LE(idle[r], reference + 1e-9) << "S=" << S << " rounds/iteration " << rounds_per_iter << " slot " << slot
                                        << " rank " << r;
        if (S == 6 && slot == 0) std::printf("AMDP S=6 m=%d: steady idle per update, rank 0: %.2f (reference %.2f)\n",
                                             S * rounds_per_iter, idle[0], reference);
      }
    }
  }
}

TEST(AsyncAmdp, S4DriftCountsPerRoundMatchTheReference) {
  // One round per iteration: drift-1 pairs per round are 2 on GPU0 and GPU3, 4 on GPU1 and GPU2.
  Planned p = plan(spec("amdp", 4, 4, 6));
  ASSERT_TRUE(p.ok);
  std::map<std::pair<int, int>, int> per_gpu_round;
  for (const VersionRecord& r : versions_from_schedule(p.compute))
    if (r.backward != r.forward)
      per_gpu_round[{p.compute.stage_to_rank[size_t(r.stage)], r.microbatch / 4}]++;
  for (int round = 1; round < 6; ++round) {
    EXPECT_EQ((per_gpu_round[{0, round}]), 2) << round;
    EXPECT_EQ((per_gpu_round[{1, round}]), 4) << round;
    EXPECT_EQ((per_gpu_round[{2, round}]), 4) << round;
    EXPECT_EQ((per_gpu_round[{3, round}]), 2) << round;
  }
}

// The S=8 reference round of every GPU, transcribed from the reference code's fwd_order/bwd_order
// lists and phase structure (Vinsmoke86/AMDP, megatron/core/pipeline_parallel/async_schedules.py,
// async_train_fourdirectional_pipeline, commit 2136e2b8): Fj/Bj = micro-batch j of the round, bj =
// the deferred backward of micro-batch j of the previous round, U = the step slot. amdp.cc no longer
// holds these lists: it generates S = 4q >= 8 from their rule, so this test checks that the rule
// gives back the reference at S=8 op for op.
const char* const kS8ReferenceRounds[8] = {
    "F0 F4 b4 F1 F2 F5 F6 F3 B3 F7 U B7 B2 B1 B6 B5 B0",
    "b4 F0 F1 F4 F5 F2 F3 F6 F7 U B3 B2 B7 B6 B1 B0 B5",
    "b5 F1 F0 F5 F4 F3 F2 F7 F6 U B2 B3 B6 B7 B0 B1 B4",
    "F1 F5 b5 F0 F3 F4 F7 F2 B2 F6 U B6 B3 B0 B7 B4 B1",
    "F2 F6 b6 F3 F0 F7 F4 F1 B1 F5 U B5 B0 B3 B4 B7 B2",
    "b6 F2 F3 F6 F7 F0 F1 F4 F5 U B1 B0 B5 B4 B3 B2 B7",
    "b7 F3 F2 F7 F6 F1 F0 F5 F4 U B0 B1 B4 B5 B2 B3 B6",
    "F3 F7 b7 F2 F1 F6 F5 F0 B0 F4 U B4 B1 B2 B5 B6 B3",
};

// The compute list of one rank as tokens: "F<global id>", "B<global id>", "U" per step slot.
std::vector<std::string> list_tokens(const Schedule& s, int rank) {
  std::vector<std::string> out;
  bool in_slot = false;
  for (const Action& a : s.per_rank[size_t(rank)]) {
    const bool slot = a.kind == ActionKind::STEP || a.kind == ActionKind::ALLREDUCE_GRAD;
    if (slot && !in_slot) out.push_back("U");
    in_slot = slot;
    if (a.kind == ActionKind::F || a.kind == ActionKind::B)
      out.push_back((a.kind == ActionKind::F ? "F" : "B") + std::to_string(a.microbatch));
  }
  return out;
}

TEST(AsyncAmdp, S8FollowsTheReferenceRoundsOpForOp) {
  for (int rounds_per_iter : {1, 2}) {
    const int rounds = 3 * rounds_per_iter;
    Schedule s;
    ASSERT_TRUE(make_schedule(spec("amdp", 8, 8 * rounds_per_iter, 3), &s).is_ok());
    for (int gpu = 0; gpu < 8; ++gpu) {
      std::vector<std::string> round_ops;
      std::istringstream in(kS8ReferenceRounds[gpu]);
      for (std::string t; in >> t;) round_ops.push_back(t);
      // Round 0 omits the deferred backward, the tail runs only it, then the segment's final slot.
      std::vector<std::string> want;
      for (int r = 0; r <= rounds; ++r) {
        for (const std::string& t : round_ops) {
          const int j = t == "U" ? 0 : std::stoi(t.substr(1));
          if (t[0] == 'b') {
            if (r > 0) want.push_back("B" + std::to_string(8 * (r - 1) + j));
            continue;
          }
          if (r == rounds) continue;
          if (t == "U") {
            if (r > 0 && r % rounds_per_iter == 0) want.push_back("U");
            continue;
          }
          want.push_back(t.substr(0, 1) + std::to_string(8 * r + j));
        }
      }
      want.push_back("U");
      EXPECT_EQ(list_tokens(s, gpu), want) << "GPU" << gpu << " rounds/iteration " << rounds_per_iter;
      // The reference's per-GPU orders of a steady round, as published in §2.2 for GPU0.
      if (gpu == 0) {
        std::vector<int> fwd, bwd;
        for (const Action& a : s.per_rank[0]) {
          if (a.microbatch < 8 || a.microbatch >= 16) continue;
          (a.kind == ActionKind::F ? fwd : bwd).push_back(a.microbatch - 8);
        }
        EXPECT_EQ(fwd, (std::vector<int>{0, 4, 1, 2, 5, 6, 3, 7}));
        EXPECT_EQ(bwd, (std::vector<int>{3, 7, 2, 1, 6, 5, 0, 4}));
      }
    }
  }
}

// §2.4 item 6 at S=8: with F=1, B=2 the steady state has no idle time besides the step slot. Every
// extra round (one per iteration) adds exactly 8 F + 8 B = 24 units of compute and one 1-unit slot
// to every GPU, and nothing else: the makespan grows by 25 per round, idle by the slot only.
TEST(AsyncAmdp, S8SteadyStateHasNoIdleBesidesTheStepSlot) {
  Planned a = plan(spec("amdp", 8, 8, 6));
  Planned b = plan(spec("amdp", 8, 8, 12));
  ASSERT_TRUE(a.ok && b.ok);
  EXPECT_DOUBLE_EQ(b.sim.makespan - a.sim.makespan, 6 * 25);
  for (int r = 0; r < 8; ++r) {
    EXPECT_DOUBLE_EQ(a.sim.busy[size_t(r)], 6 * 24) << r;
    EXPECT_DOUBLE_EQ(b.sim.busy[size_t(r)], 12 * 24) << r;
    EXPECT_DOUBLE_EQ(b.sim.idle[size_t(r)] - a.sim.idle[size_t(r)], 6) << "GPU" << r << ": 6 more slots, no gap";
  }
  // And inside the run: over rounds 2..9 of the 12-round run, every GPU is busy except 1 unit per slot.
  auto f_start = [&](int mb) {  // F of micro-batch mb on stage 0 (GPU0)
    const auto& list = b.lowered.per_rank[0];
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i].kind == ActionKind::F && list[i].stage == 0 && list[i].microbatch == mb)
        return b.sim.timeline[0][i].start;
    return -1.0;
  };
  const double t0 = f_start(16), t1 = f_start(80);
  ASSERT_GT(t1 - t0, 7 * 25 - 1);
  for (int r = 0; r < 8; ++r) {
    double slot = 0;
    const auto& list = b.lowered.per_rank[size_t(r)];
    for (size_t i = 0; i < list.size(); ++i) {
      const SimEvent& e = b.sim.timeline[size_t(r)][i];
      if ((list[i].kind == ActionKind::STEP || list[i].kind == ActionKind::ALLREDUCE_GRAD) && e.start >= t0 &&
          e.end <= t1)
        slot += e.end - e.start;
    }
    EXPECT_DOUBLE_EQ(async_test::busy_in(b, r, t0, t1) + slot, t1 - t0) << "GPU" << r << " idles in [" << t0 << ", "
                                                                       << t1 << ")";
  }
}

// step_slot: reference (§2.2 "Reference-code artifact"). The reduce of each replica follows its last
// backward of the iteration and the slot holds only the STEPs; a non-owner's backward between the
// two is dropped (applied -1), an owner's is applied at that STEP. S=4: exactly GPU0's replica of
// stage 3 (pipeline 1, virtual stage 7) drops B of j=1 of every iteration's first round (t >= 1);
// GPU3's B of j=0 on its owned stage 3 is applied one step early, as in clean mode. Apart from the
// dropped gradients the record equals clean mode's (same op order); clean mode drops nothing.
// S=8: the three non-owner replicas of stage 7 drop the loss-stage B they run before U.
ScheduleSpec reference_spec(int S, int m, int updates, const char* slot) {
  ScheduleSpec sp = spec("amdp", S, m, updates);
  sp.amdp_step_slot = slot;
  return sp;
}

TEST(AsyncAmdp, ReferenceStepSlotDropsExactlyTheDocumentedGradients) {
  for (int S : {4, 8}) {
    for (int rounds_per_iter : {1, 2}) {
      const int m = S * rounds_per_iter, updates = 4, K = S / 2;
      const std::string what = "S=" + std::to_string(S) + " m=" + std::to_string(m);
      Planned ref = plan(reference_spec(S, m, updates, "reference"));
      Planned clean = plan(reference_spec(S, m, updates, "clean"));
      ASSERT_TRUE(ref.ok && clean.ok) << what;
      // ALLREDUCE_GRAD(v) right after v's last backward of an iteration; one per stage and update.
      for (int r = 0; r < S; ++r) {
        const auto& list = ref.compute.per_rank[size_t(r)];
        std::map<int, int> reduces;
        for (size_t i = 0; i < list.size(); ++i) {
          if (list[i].kind != ActionKind::ALLREDUCE_GRAD || !(list[i].group & kGroupReplicas)) continue;
          ++reduces[list[i].stage];
          ASSERT_GT(i, 0u);
          const Action& b = list[i - 1];
          EXPECT_EQ(b.kind, ActionKind::B) << what;
          EXPECT_EQ(b.stage, list[i].stage) << what;
          EXPECT_EQ(b.microbatch % m, m - K + list[i].stage / S) << what << " rank " << r;
        }
        EXPECT_EQ(int(reduces.size()), K) << what;
        for (auto [v, n] : reduces) EXPECT_EQ(n, updates) << what << " stage " << v;
      }
      for (const Planned* p : {&ref, &clean}) expect_replica_collectives_in_the_same_order(p->compute, what);
      const auto rec = versions_from_schedule(ref.compute);
      const auto rec_clean = versions_from_schedule(clean.compute);
      EXPECT_TRUE(check_amdp_invariants(rec_clean, S, K, m).is_ok()) << what;
      std::map<std::pair<int, int>, VersionRecord> by_key;
      for (const VersionRecord& r : rec_clean) {
        EXPECT_GE(r.applied, 0) << what << ": clean mode drops nothing";
        by_key[{r.microbatch, r.stage}] = r;
      }
      ASSERT_EQ(rec.size(), rec_clean.size());
      std::set<std::pair<int, int>> dropped;
      for (const VersionRecord& r : rec) {
        const VersionRecord& c = by_key.at({r.microbatch, r.stage});
        EXPECT_EQ(r.forward, c.forward) << what;
        EXPECT_EQ(r.backward, c.backward) << what;
        if (r.applied < 0) {
          dropped.insert({r.microbatch, r.stage});
          EXPECT_NE(ref.compute.stage_to_rank[size_t(r.stage)], ref.compute.stage_to_rank[size_t(r.stage % S)])
              << what << ": only non-owners drop";
        } else {
          EXPECT_EQ(r.applied, c.applied) << what << " mb " << r.microbatch << " stage " << r.stage;
        }
      }
      std::set<std::pair<int, int>> want;
      for (int t = 1; t < updates; ++t) {
        if (S == 4) want.insert({m * t + 1, 7});
        // S=8, all on model stage 7 (loss: its B follows its F at once), before U in an iteration's
        // first round: GPU4's B1 (pipeline 1), GPU3's B2 (pipeline 2), GPU0's B3 (pipeline 3);
        // GPU7's B0 (pipeline 0) is on the owner and applied early.
        if (S == 8) want.insert({{m * t + 1, 15}, {m * t + 2, 23}, {m * t + 3, 31}});
      }
      EXPECT_EQ(dropped, want) << what;
    }
  }
}

// §2.4 item 8 (memory): peak activation count per GPU <= S for S=4. The reference
// measured exactly 4 stage-activations per GPU in steady state (3+1 on GPUs 0 and 3,
// 2+2 on GPUs 1 and 2), balanced like Chimera. S=8 is reported, not bounded.
TEST(AsyncAmdp, S4PeakActivationsPerGpuAtMostS) {
  Planned p = plan(spec("amdp", 4, 4, 12));
  ASSERT_TRUE(p.ok);
  for (int r = 0; r < 4; ++r) {
    EXPECT_LE(p.sim.peak_in_flight[size_t(r)], 4) << "GPU " << r;
    EXPECT_GE(p.sim.peak_in_flight[size_t(r)], 3) << "GPU " << r << ": suspiciously little in flight";
  }
  Planned p8 = plan(spec("amdp", 8, 8, 6));
  ASSERT_TRUE(p8.ok);
  std::string peaks;
  for (int v : p8.sim.peak_in_flight) peaks += " " + std::to_string(v);
  std::printf("AMDP S=8 peak in-flight stage-activations per GPU:%s\n", peaks.c_str());
}

TEST(AsyncAmdp, BadInputNamesTheKey) {
  Schedule out;
  Status st = make_schedule(spec("amdp", 3, 6, 1), &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("parallel.pp"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("even"), std::string::npos) << st.message();
  st = make_schedule(spec("amdp", 4, 6, 1), &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("training.microbatches"), std::string::npos) << st.message();
  st = make_schedule(reference_spec(6, 6, 1, "reference"), &out);  // the reference code has S=4, 8 only
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("schedule.amdp.step_slot"), std::string::npos) << st.message();
  st = make_schedule(reference_spec(4, 4, 1, "late"), &out);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("schedule.amdp.step_slot"), std::string::npos) << st.message();
}

// ---------------------------------------------------------------------------------------------
// LocalSGD (§5.4)

ScheduleSpec localsgd_spec(int S, int m, int updates, int copies, int local_steps) {
  ScheduleSpec sp = spec("localsgd", S, m, updates);
  sp.localsgd_copies = copies;
  sp.localsgd_local_steps = local_steps;
  return sp;
}

// Lowered and simulated with §5.4's unit times F = B = 1, free steps and averages.
Planned plan_unit_fb(const ScheduleSpec& sp) {
  Planned p;
  if (!make_schedule(sp, &p.compute).is_ok() || !lower_communication(p.compute, &p.lowered).is_ok()) return p;
  EXPECT_TRUE(validate_lowered(p.lowered).is_ok());
  p.ok = simulate(p.lowered, CostModel::uniform(p.lowered.num_stages, 1, 0.5, 0.5), &p.sim).is_ok();
  return p;
}

// One timeline row of §5.4 (1-based micro-batches, one cell per time step) against the simulated
// ops of a rank (0-based), over the row's length.
void expect_doc_row(const Planned& p, int rank, const std::string& row) {
  std::istringstream in(row.substr(row.find(':') + 1));
  std::vector<Op> want;
  int t = 0;
  for (std::string cell; in >> cell; ++t)
    if (cell != ".") want.push_back({cell.substr(0, 1) + std::to_string(std::stoi(cell.substr(1)) - 1), t});
  auto got = async_test::sim_ops(p, rank);
  std::vector<Op> head;
  for (const Op& o : got)
    if (o.start < t && o.label != "U") head.push_back(o);
  EXPECT_EQ(head, want) << "rank " << rank << "\n got: " << async_test::show(head)
                        << "\nwant: " << async_test::show(want);
}

// §5.4: S = 4, M = 4 copies, K = 2 local steps, 16 micro-batches at F = B = 1 take 44 time steps,
// PipeDream (update per backward) 38; the documented rows of stages 0 and 3, cell for cell.
TEST(AsyncLocalSgd, Section54TimelineTakes44StepsAndPipeDream38) {
  Planned l = plan_unit_fb(localsgd_spec(4, 4, 4, 4, 2));
  ASSERT_TRUE(l.ok);
  EXPECT_EQ(l.compute.microbatches, 16);
  EXPECT_DOUBLE_EQ(l.sim.makespan, 44) << format_timeline(l.lowered, l.sim);
  // PipeDream's rule (pipedream.cc: NOAM = S at stage 0, backward first) with its order fixed at
  // F = B = 1, as §5.4's simulator runs it. (The pipedream kind fixes its order at F=1, B=2; at
  // F = B = 1 that order is one step longer, printed below.)
  schedules_internal::WorkerLoopRule rule;
  rule.stages = 4;
  rule.total = 16;
  rule.backward_cost = 1;
  rule.allowed_lagging = {4, INT_MAX, INT_MAX, INT_MAX};
  Planned pd;
  pd.compute = l.compute;
  pd.compute.num_stages = 4;
  pd.compute.pipelines = 1;
  pd.compute.model_stages = 0;
  pd.compute.stage_to_rank = {0, 1, 2, 3};
  pd.compute.per_rank = schedules_internal::run_worker_loop(rule);
  ASSERT_TRUE(lower_communication(pd.compute, &pd.lowered).is_ok());
  ASSERT_TRUE(simulate(pd.lowered, CostModel::uniform(4, 1, 0.5, 0.5), &pd.sim).is_ok());
  EXPECT_DOUBLE_EQ(pd.sim.makespan, 38) << format_timeline(pd.lowered, pd.sim);
  Planned kind = plan_unit_fb(spec("pipedream", 4, 1, 16));
  std::printf("pipedream kind (order fixed at F=1, B=2) at F = B = 1: %.0f steps\n", kind.sim.makespan);
  expect_doc_row(l, 0, "S0:  F1  F2  F3  F4   .   .   .  B1  F5  B2  F6  B3  F7  B4  F8  B5   .  B6   .  B7   .  B8  "
                       "F9 F10 F11 F12   .   .   .  B9 F13 B10");
  expect_doc_row(l, 3, "S3:   .   .   .  F1  B1  F2  B2  F3  B3  F4  B4  F5  B5  F6  B6  F7  B7  F8  B8   .   .   .   "
                       ".   .   .  F9  B9 F10 B10 F11 B11");
}

// §5.6 item 5 on the pure record, across depths, copies, accumulation, round lengths and segments
// that end in a partial round: zero staleness for every (micro-batch, stage); one weight version
// alive at a time; every copy steps once per update; every rank averages once per round, right
// after the round's last backward, with nothing of the next round before it.
TEST(AsyncLocalSgd, ZeroStalenessStepsAndRoundBarriers) {
  for (int S : {1, 2, 4, 5}) {
    for (int M : {1, 3, S}) {
      for (int a : {1, 2}) {
        for (int K : {1, 2, 3}) {
          const int m = M * a, updates = 5;
          const std::string what = "S=" + std::to_string(S) + " M=" + std::to_string(M) + " m=" +
                                   std::to_string(m) + " K=" + std::to_string(K);
          Planned p = plan(localsgd_spec(S, m, updates, M, K));
          ASSERT_TRUE(p.ok) << what;
          ASSERT_EQ(p.compute.pipelines, M);
          const auto rec = versions_from_schedule(p.compute);
          Status st = check_localsgd_invariants(rec, S, M, m);
          EXPECT_TRUE(st.is_ok()) << what << ": " << st.message();
          for (int v : peak_live_versions(p.compute)) EXPECT_EQ(v, 1) << what;
          const int round = K * m, N = m * updates;
          for (int r = 0; r < S; ++r) {
            std::map<int, int> steps;
            int last_b = -1, averages = 0, first_f_after = -1;
            for (const Action& x : p.compute.per_rank[size_t(r)]) {
              if (x.kind == ActionKind::STEP) ++steps[x.stage];
              if (x.kind == ActionKind::B) last_b = x.microbatch;
              if (x.kind == ActionKind::F && first_f_after >= 0) {
                EXPECT_EQ(x.microbatch, first_f_after) << what << " rank " << r;
                first_f_after = -1;
              }
              if (x.kind != ActionKind::AVERAGE) continue;
              ++averages;
              EXPECT_EQ(x.stage, r) << what;
              EXPECT_TRUE((last_b + 1) % round == 0 || last_b == N - 1) << what << " rank " << r << " after B" << last_b;
              first_f_after = last_b + 1;  // the next round's first micro-batch comes next
            }
            EXPECT_EQ(averages, (updates + K - 1) / K) << what << " rank " << r;
            EXPECT_EQ(int(steps.size()), M) << what;
            for (auto [v, n] : steps) EXPECT_EQ(n, updates) << what << " stage " << v;
          }
        }
      }
    }
  }
}

TEST(AsyncLocalSgd, BadInputNamesTheKey) {
  Schedule out;
  auto expect_key = [&](const ScheduleSpec& sp, const char* key) {
    Status st = make_schedule(sp, &out);
    ASSERT_FALSE(st.is_ok()) << key;
    EXPECT_EQ(st.message().rfind(key, 0), 0u) << st.message();
  };
  expect_key(localsgd_spec(4, 4, 2, -1, 2), "schedule.localsgd.copies");
  expect_key(localsgd_spec(4, 4, 2, 4, 0), "schedule.localsgd.local_steps");
  expect_key(localsgd_spec(4, 6, 2, 4, 2), "training.microbatches");
  expect_key(localsgd_spec(4, 4, 2, 3, 2), "training.microbatches");
  ScheduleSpec sp = localsgd_spec(4, 4, 2, 0, 2);
  sp.chunks = 2;
  expect_key(sp, "schedule.chunks");
  sp.chunks = 1;
  sp.tie_embeddings = true;
  expect_key(sp, "model.tie_embeddings");
  sp.tie_embeddings = false;
  sp.amdp_zero_owner = false;
  expect_key(sp, "schedule.amdp.zero_owner");
  sp.amdp_zero_owner = true;
  sp.paci_allowed_lagging = {4, 3, 2, 1};
  expect_key(sp, "schedule.paci.allowed_lagging");
  EXPECT_TRUE(make_schedule(localsgd_spec(4, 4, 2, 2, 2), &out).is_ok());  // 2 copies, 2 micro-batches each
  for (const char* other : {"pipedream", "1f1b", "amdp"}) {
    ScheduleSpec o = localsgd_spec(4, 4, 2, 2, 2);
    o.kind = other;
    expect_key(o, "schedule.localsgd.copies");
    o.localsgd_copies = 0;
    o.localsgd_local_steps = 3;
    expect_key(o, "schedule.localsgd.copies");
  }
}

// The validator sees the round barrier: an AVERAGE with a micro-batch of a replica in flight, over
// the data-parallel group, or naming a virtual stage, is rejected.
TEST(AsyncLocalSgd, ValidatorRejectsAnAverageThatIsNotABarrier) {
  Schedule good;
  ASSERT_TRUE(make_schedule(localsgd_spec(2, 2, 4, 2, 2), &good).is_ok());
  ASSERT_TRUE(validate_compute(good).is_ok());
  auto& list = good.per_rank[0];
  const auto avg = std::find_if(list.begin(), list.end(), [](const Action& a) { return a.kind == ActionKind::AVERAGE; });
  ASSERT_NE(avg, list.end());
  {
    Schedule s = good;
    auto& l = s.per_rank[0];
    const size_t i = size_t(avg - list.begin());
    std::rotate(l.begin() + long(i) - 3, l.begin() + long(i), l.begin() + long(i) + 1);  // before the last B
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("in flight across the average"), std::string::npos) << st.message();
  }
  {
    Schedule s = good;
    s.per_rank[0][size_t(avg - list.begin())].group = kGroupData;
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("replicas only"), std::string::npos) << st.message();
  }
  {
    Schedule s = good;
    s.per_rank[0][size_t(avg - list.begin())].stage = 2;  // copy 1's stage 0: a virtual stage
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("model stage"), std::string::npos) << st.message();
  }
}

TEST(AsyncRegistry, KindsAreRegisteredAndAsync) {
  for (const char* k : {"pipedream", "pipedream_2bw", "paci", "paci_flush", "amdp", "localsgd"}) {
    EXPECT_TRUE(is_async_kind(k)) << k;
    Schedule s;
    EXPECT_TRUE(make_schedule(spec(k, 4, 4, 2), &s).is_ok()) << k;
    EXPECT_EQ(s.name, k);
    EXPECT_EQ(s.microbatches, 8) << k;
  }
  for (const char* k : {"gpipe", "1f1b", "interleaved_1f1b", "bfpp", "zb_h1", "nope"})
    EXPECT_FALSE(is_async_kind(k)) << k;
  int n = 0;
  const char* const* names = schedule_kinds(&n);
  EXPECT_EQ(n, 12);
  EXPECT_STREQ(names[10], "localsgd");
  EXPECT_STREQ(names[11], "rpd");  // rpd_schedule_test covers it
  EXPECT_TRUE(is_async_kind("rpd"));
}

}  // namespace
}  // namespace pt
