// Transport groups (pipeline/comm_groups.h): comm runs and the mirror rule on hand-made
// lists; every registered schedule kind, lowered over a grid of ranks, chunks and
// micro-batches, forms groups that cannot deadlock (validate_comm_groups), and forms some;
// lists that are fine with blocking receives but deadlock once their runs are grouped (a
// hand-made one, and interleaved_1f1b grouped naively, every run with a send and a
// receive) are rejected.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipeline/comm_groups.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/validate.h"

namespace pt {
namespace {

Action act(const char* text) {
  Action a;
  EXPECT_TRUE(parse_action(text, &a).is_ok()) << text;
  return a;
}

std::vector<Action> list_of(std::initializer_list<const char*> texts) {
  std::vector<Action> out;
  for (const char* t : texts) out.push_back(act(t));
  return out;
}

std::vector<std::vector<CommGroup>> naive_groups(const Schedule& s) {
  std::vector<std::vector<CommGroup>> g;
  for (const auto& l : s.per_rank) g.push_back(comm_runs(l));
  return g;
}

TEST(CommGroups, RunsAreMaximalCommRunsWithASendAndAReceive) {
  const std::vector<Action> l = list_of({"0F0", "0SEND_ACT0->1", "0F1", "0SEND_ACT1->1", "0RECV_GRAD0<-1", "0B0",
                                         "0RECV_GRAD1<-1", "0B1", "0SEND_ACT2->1", "0SEND_ACT3->1"});
  const std::vector<CommGroup> g = comm_runs(l);
  ASSERT_EQ(g.size(), 1u);  // a lone send, a lone receive and a run of sends form no group
  EXPECT_EQ(g[0].begin, 3);
  EXPECT_EQ(g[0].end, 5);
  const std::vector<Action> two = list_of({"1RECV_ACT0<-0", "1SEND_GRAD0->0", "1RECV_ACT1<-0", "1F1"});
  const std::vector<CommGroup> g2 = comm_runs(two);
  ASSERT_EQ(g2.size(), 1u);  // the whole run, whatever its order
  EXPECT_EQ(g2[0].begin, 0);
  EXPECT_EQ(g2[0].end, 3);
}

TEST(CommGroups, EveryRegisteredKindIsDeadlockFreeUnderGroups) {
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  int64_t groups = 0;
  for (int i = 0; i < count; ++i) {
    int planned = 0;
    for (int ranks : {2, 3, 4, 8})
      for (int chunks : {1, 2, 3})
        for (int m : {1, 2, 3, 4, 5, 8, 12, 16}) {
          ScheduleSpec spec{kinds[i], ranks, chunks, m, 0};
          spec.segment_updates = 2;
          Schedule compute, lowered;
          if (!make_schedule(spec, &compute).is_ok()) continue;  // not a valid combination for this kind
          ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
          ASSERT_TRUE(validate_lowered(lowered).is_ok());
          const Status st = validate_comm_groups(lowered);
          EXPECT_TRUE(st.is_ok()) << kinds[i] << " ranks " << ranks << " chunks " << chunks << " m " << m << ": "
                                  << st.message();
          for (const auto& l : comm_groups(lowered)) groups += int64_t(l.size());
          ++planned;
        }
    EXPECT_GT(planned, 0) << kinds[i] << ": no grid point is a valid spec";
  }
  EXPECT_GT(groups, 0) << "no schedule formed a group: the check above checked nothing";
}

// Two ranks, stages 0 and 2 on rank 0, 1 and 3 on rank 1 (compute actions only separate
// the comm runs). With blocking receives and non-blocking sends this runs: each rank's
// group receives what the other sent before its group. Grouped, each group's send waits
// for a receive the peer posts only after its own group: a cycle.
Schedule crossing_groups(bool group_on_rank1) {
  Schedule s;
  s.num_ranks = 2;
  s.num_stages = 4;
  s.microbatches = 2;
  s.stage_to_rank = {0, 1, 0, 1};
  s.per_rank = {list_of({"0SEND_ACT0->1", "0F1", "0SEND_ACT1->1", "2RECV_ACT0<-1", "2F0", "2RECV_ACT1<-1"}),
                list_of({"1SEND_ACT0->0", "1F0", "1SEND_ACT1->0", "1RECV_ACT0<-0", "1F1", "1RECV_ACT1<-0"})};
  if (!group_on_rank1) s.per_rank[1].insert(s.per_rank[1].begin() + 3, act("1B0"));
  return s;
}

TEST(CommGroups, CrossingGroupsAreRejectedAsADeadlock) {
  const Schedule bad = crossing_groups(true);
  ASSERT_EQ(comm_runs(bad.per_rank[0]).size(), 1u);
  ASSERT_EQ(comm_runs(bad.per_rank[1]).size(), 1u);
  const Status st = validate_comm_groups(bad, naive_groups(bad));
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("deadlock under transport groups"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("ERROR HERE"), std::string::npos) << st.message();
  // The runs are not mirrors (each send's receive lies outside the peer's run): no group.
  for (const auto& l : comm_groups(bad)) EXPECT_TRUE(l.empty());
  EXPECT_TRUE(validate_comm_groups(bad).is_ok());
  // One group alone is matched: rank 1's receive of rank 0's grouped send is posted as soon
  // as rank 1 gets past its now plain sends.
  const Schedule one = crossing_groups(false);
  ASSERT_EQ(comm_runs(one.per_rank[1]).size(), 0u);
  EXPECT_TRUE(validate_comm_groups(one, naive_groups(one)).is_ok());
}

TEST(CommGroups, NaiveGroupingDeadlocksARegisteredScheduleAndMirrorGroupingDoesNot) {
  ScheduleSpec spec{"interleaved_1f1b", 2, 2, 4, 0};
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule(spec, &compute).is_ok());
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  const Status st = validate_comm_groups(lowered, naive_groups(lowered));
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("deadlock under transport groups"), std::string::npos) << st.message();
  EXPECT_TRUE(validate_comm_groups(lowered).is_ok());
}

TEST(CommGroups, MirrorPairsAreGroupedOnBothRanks) {
  // Two ranks exchanging in lock step: each run sends one message and receives the other's.
  Schedule s;
  s.num_ranks = 2;
  s.num_stages = 2;
  s.microbatches = 2;
  s.stage_to_rank = {0, 1};
  s.per_rank = {list_of({"0F1", "0SEND_ACT1->1", "0RECV_GRAD0<-1", "0B0"}),
                list_of({"1B0", "1SEND_GRAD0->0", "1RECV_ACT1<-0", "1F1"})};
  const auto g = comm_groups(s);
  ASSERT_EQ(g[0].size(), 1u);
  ASSERT_EQ(g[1].size(), 1u);
  EXPECT_EQ(g[0][0].begin, 1);
  EXPECT_EQ(g[0][0].end, 3);
  EXPECT_EQ(g[1][0].begin, 1);
  EXPECT_TRUE(validate_comm_groups(s).is_ok());
  // A third action in rank 1's run (a receive from rank 0 not in rank 0's run) breaks the mirror.
  s.microbatches = 3;
  s.per_rank[1].insert(s.per_rank[1].begin() + 3, act("1RECV_ACT2<-0"));
  s.per_rank[0].push_back(act("0SEND_ACT2->1"));
  const auto h = comm_groups(s);
  EXPECT_TRUE(h[0].empty());
  EXPECT_TRUE(h[1].empty());
}

}  // namespace
}  // namespace pt
