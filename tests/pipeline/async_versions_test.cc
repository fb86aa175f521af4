// versions.h: the pure version record of a list equals the executor's bookkeeping on hand-built
// lists (stashed and live reads, STEP application), the checkers reject each violated rule with a
// message naming micro-batch, stage and rule, and the version-existence / live-version counters.
#include <gtest/gtest.h>

#include "pipeline/schedules/schedules.h"
#include "pipeline/versions.h"

namespace pt {
namespace {

Schedule one_stage(const std::vector<std::string>& tokens) {
  Schedule s;
  s.num_ranks = 1;
  s.num_stages = 1;
  s.microbatches = 4;
  s.stage_to_rank = {0};
  s.per_rank.resize(1);
  for (const auto& t : tokens) {
    Action a;
    EXPECT_TRUE(parse_action(t, &a).is_ok()) << t;
    s.per_rank[0].push_back(a);
  }
  return s;
}

TEST(AsyncVersions, RecordFollowsTheExecutorRules) {
  // F0 F1 at v0; B0 then STEP (applies mb 0 at 0); F2 at v1; B1 reads stashed v0; B2 at v1; STEP.
  Schedule s = one_stage({"0F0", "0F1", "0B0", "0STEP", "0F2@1", "0B1", "0B2@1", "0STEP"});
  const auto rec = versions_from_schedule(s);
  ASSERT_EQ(rec.size(), 3u);
  EXPECT_EQ(rec[0].microbatch, 0);
  EXPECT_EQ(rec[0].applied, 0);
  EXPECT_EQ(rec[1].forward, 0);
  EXPECT_EQ(rec[1].backward, 0);
  EXPECT_EQ(rec[1].applied, 1);
  EXPECT_EQ(rec[2].forward, 1);
  EXPECT_EQ(rec[2].applied, 1);
  EXPECT_TRUE(check_version_reads(s).is_ok());
  // Version 0 is still read by B1 after the first STEP: 2 versions alive.
  EXPECT_EQ(peak_live_versions(s), std::vector<int>{2});
  const auto sum = summarize_versions(rec, 1);
  EXPECT_EQ(sum[0].records, 3);
  EXPECT_EQ(sum[0].max_delay, 1);
  EXPECT_EQ(sum[0].max_drift, 0);
  // A read of a version that does not exist yet is rejected, naming the action.
  Schedule bad = one_stage({"0F0@1", "0B0@1", "0STEP"});
  Status st = check_version_reads(bad);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("0F0@1"), std::string::npos) << st.message();
}

std::vector<VersionRecord> paci_record(int S, int a, int updates) {
  ScheduleSpec sp;
  sp.kind = "paci";
  sp.ranks = S;
  sp.microbatches = a;
  sp.segment_updates = updates;
  Schedule s;
  EXPECT_TRUE(make_schedule(sp, &s).is_ok());
  return versions_from_schedule(s);
}

TEST(AsyncVersions, CheckersNameMicroBatchStageAndRule) {
  auto rec = paci_record(4, 4, 4);
  ASSERT_TRUE(check_paci_invariants(rec, 4, 4).is_ok());
  // Drift beyond the law on the last stage.
  auto r1 = rec;
  for (auto& r : r1)
    if (r.stage == 3 && r.microbatch == 5) r.backward = r.forward + 1;
  Status st = check_paci_invariants(r1, 4, 4);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("micro-batch 5, stage 3"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("drift"), std::string::npos) << st.message();
  // A gradient never applied / applied by the wrong step.
  auto r2 = rec;
  r2[3].applied = -1;
  EXPECT_NE(check_paci_invariants(r2, 4, 4).message().find("never applied"), std::string::npos);
  auto r3 = rec;
  r3[3].applied += 1;
  EXPECT_NE(check_paci_invariants(r3, 4, 4).message().find("a, 2a"), std::string::npos);
  // A duplicate and a missing pair.
  auto r4 = rec;
  r4.push_back(rec[0]);
  EXPECT_NE(check_paci_invariants(r4, 4, 4).message().find("twice"), std::string::npos);
  auto r5 = rec;
  r5.erase(r5.begin() + 2);
  EXPECT_NE(check_paci_invariants(r5, 4, 4).message().find("missing"), std::string::npos);
  // PipeDream demands drift 0; 2BW demands version max(0, t-1); AMDP drift 1 outside round 0.
  EXPECT_NE(check_pipedream_invariants(rec, 4, 4).message().find("drift"), std::string::npos);
  EXPECT_FALSE(check_2bw_invariants(rec, 4, 4).is_ok());
  EXPECT_FALSE(check_drift_zero(rec).is_ok());
}

TEST(AsyncVersions, AmdpCheckerRejectsLateDriftAndWrongPipeline) {
  ScheduleSpec sp;
  sp.kind = "amdp";
  sp.ranks = 4;
  sp.microbatches = 8;  // 2 rounds per iteration
  sp.segment_updates = 3;
  Schedule s;
  ASSERT_TRUE(make_schedule(sp, &s).is_ok());
  auto rec = versions_from_schedule(s);
  ASSERT_TRUE(check_amdp_invariants(rec, 4, 2, 8).is_ok());
  auto r1 = rec;
  for (auto& r : r1)
    if (r.microbatch == 13) r.backward = r.forward + 1;  // second round of iteration 1
  Status st = check_amdp_invariants(r1, 4, 2, 8);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("first round"), std::string::npos) << st.message();
  auto r2 = rec;
  r2[0].stage = (r2[0].stage + 4) % 8;  // the other pipeline's replica
  EXPECT_FALSE(check_amdp_invariants(r2, 4, 2, 8).is_ok());
}

// LocalSGD's checker (§5.6 item 5): one drifted, one stale (applied late) and one misplaced record
// are each rejected; PipeDream's list (staleness S-1-s) fails it.
TEST(AsyncVersions, LocalSgdCheckerRejectsStalenessAndWrongCopy) {
  ScheduleSpec sp;
  sp.kind = "localsgd";
  sp.ranks = 4;
  sp.microbatches = 4;
  sp.segment_updates = 4;
  Schedule s;
  ASSERT_TRUE(make_schedule(sp, &s).is_ok());
  const auto rec = versions_from_schedule(s);
  ASSERT_TRUE(check_localsgd_invariants(rec, 4, 4, 4).is_ok());
  for (int change = 0; change < 3; ++change) {
    auto r = rec;
    for (auto& x : r) {
      if (x.microbatch != 9) continue;
      if (change == 0) x.backward = x.forward + 1;
      if (change == 1) x.applied = x.forward + 1;
      if (change == 2) x.stage = (x.stage + 4) % 16;  // the next copy's replica
    }
    Status st = check_localsgd_invariants(r, 4, 4, 4);
    ASSERT_FALSE(st.is_ok()) << change;
    EXPECT_NE(st.message().find("micro-batch 9"), std::string::npos) << st.message();
  }
  sp.kind = "pipedream";
  sp.microbatches = 1;
  sp.segment_updates = 16;
  ASSERT_TRUE(make_schedule(sp, &s).is_ok());
  EXPECT_FALSE(check_localsgd_invariants(versions_from_schedule(s), 4, 1, 1).is_ok());
}

}  // namespace
}  // namespace pt
