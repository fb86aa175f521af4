// The IR's text form: format_action/parse_action round-trip every action kind (with and without
// peer and version), and junk is rejected with a message naming the text.
#include "pipeline/action.h"

#include <gtest/gtest.h>

#include <utility>

namespace pt {
namespace {

Action make(ActionKind k, int stage, int mb, int peer = -1, int version = 0) {
  Action a;
  a.kind = k;
  a.stage = stage;
  a.microbatch = mb;
  a.peer_rank = peer;
  a.version = version;
  return a;
}

TEST(ActionText, FormatsTheDocumentedForms) {
  EXPECT_EQ(format_action(make(ActionKind::F, 2, 5)), "2F5");
  EXPECT_EQ(format_action(make(ActionKind::B, 1, 3)), "1B3");
  EXPECT_EQ(format_action(make(ActionKind::Bx, 1, 3)), "1Bx3");
  EXPECT_EQ(format_action(make(ActionKind::Bw, 1, 3)), "1Bw3");
  EXPECT_EQ(format_action(make(ActionKind::SEND_ACT, 0, 4, 1)), "0SEND_ACT4->1");
  EXPECT_EQ(format_action(make(ActionKind::RECV_ACT, 1, 4, 0)), "1RECV_ACT4<-0");
  EXPECT_EQ(format_action(make(ActionKind::SEND_GRAD, 1, 3, 0)), "1SEND_GRAD3->0");
  EXPECT_EQ(format_action(make(ActionKind::RECV_GRAD, 0, 3, 1)), "0RECV_GRAD3<-1");
  EXPECT_EQ(format_action(make(ActionKind::STEP, 3, -1)), "3STEP");
  EXPECT_EQ(format_action(make(ActionKind::ALLREDUCE_GRAD, 0, -1)), "0ALLREDUCE_GRAD");
  EXPECT_EQ(format_action(make(ActionKind::F, 2, 5, -1, 7)), "2F5@7");
}

TEST(ActionText, RoundTripsEveryKind) {
  int checked = 0;
  for (int k = 0; k < kNumActionKinds; ++k) {
    const ActionKind kind = ActionKind(k);
    const bool no_mb = is_state_action(kind);
    for (int stage : {0, 7, 1023}) {
      for (int mb : {0, 5, 4095}) {
        for (int version : {0, 3}) {
          Action a = make(kind, stage, no_mb ? -1 : mb, is_comm(kind) ? stage % 5 : -1, version);
          Action back;
          Status st = parse_action(format_action(a), &back);
          ASSERT_TRUE(st.is_ok()) << format_action(a) << ": " << st.message();
          EXPECT_EQ(back, a) << format_action(a) << " parsed as " << format_action(back);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, kNumActionKinds * 3 * 3 * 2);
}

TEST(ActionText, RejectsJunkWithAMessage) {
  for (const char* junk : {"", "F5", "2X5", "2F", "2F5->1", "0SEND_ACT4<-1", "0RECV_ACT4->1",
                           "2F5@", "2F5 ", "0SEND_ACT4->", "2Bq3"}) {
    Action a;
    Status st = parse_action(junk, &a);
    EXPECT_FALSE(st.is_ok()) << "accepted '" << junk << "'";
    EXPECT_NE(st.message().find(std::string("'") + junk + "'"), std::string::npos) << st.message();
  }
}

// ALLREDUCE_GRAD names its group as a suffix; the text without one (lists written before groups
// existed) still parses, with group 0.
TEST(ActionText, AllreduceGroupSuffixRoundTrips) {
  const std::pair<uint8_t, const char*> forms[] = {{kGroupData, "3ALLREDUCE_GRAD:dp"},
                                                   {kGroupReplicas, "3ALLREDUCE_GRAD:rep"},
                                                   {kGroupData | kGroupReplicas, "3ALLREDUCE_GRAD:dp+rep"}};
  for (const auto& [group, text] : forms) {
    Action a = make(ActionKind::ALLREDUCE_GRAD, 3, -1);
    a.group = group;
    EXPECT_EQ(format_action(a), text);
    Action back;
    ASSERT_TRUE(parse_action(text, &back).is_ok()) << text;
    EXPECT_EQ(back, a) << text;
  }
  Action old;
  ASSERT_TRUE(parse_action("3ALLREDUCE_GRAD", &old).is_ok());
  EXPECT_EQ(old.group, 0);
  EXPECT_EQ(old.kind, ActionKind::ALLREDUCE_GRAD);
  for (const char* junk : {"3ALLREDUCE_GRAD:", "3ALLREDUCE_GRAD:xp", "3ALLREDUCE_GRAD:dp+dp",
                           "3ALLREDUCE_GRAD:dp+", "3STEP:dp", "2F5:rep"}) {
    Action a;
    Status st = parse_action(junk, &a);
    EXPECT_FALSE(st.is_ok()) << "accepted '" << junk << "'";
  }
}

// AVERAGE (LocalSGD's round barrier) names the replica group and carries no micro-batch.
TEST(ActionText, AverageRoundTripsWithItsGroup) {
  Action a = make(ActionKind::AVERAGE, 1, -1);
  a.group = kGroupReplicas;
  EXPECT_EQ(format_action(a), "1AVERAGE:rep");
  Action back;
  ASSERT_TRUE(parse_action("1AVERAGE:rep", &back).is_ok());
  EXPECT_EQ(back, a);
  EXPECT_TRUE(is_state_action(ActionKind::AVERAGE));
  EXPECT_TRUE(is_group_action(ActionKind::AVERAGE));
  EXPECT_FALSE(is_group_action(ActionKind::STEP));
  EXPECT_FALSE(is_state_action(ActionKind::F));
}

TEST(ActionPredicates, ClassifyKinds) {
  EXPECT_TRUE(is_compute(ActionKind::Bw));
  EXPECT_FALSE(is_compute(ActionKind::SEND_ACT));
  EXPECT_TRUE(is_send(ActionKind::SEND_GRAD));
  EXPECT_TRUE(is_recv(ActionKind::RECV_ACT));
  EXPECT_FALSE(is_comm(ActionKind::STEP));
}

TEST(Placement, LoopingPutsStageCNPlusDOnRankD) {
  std::vector<int> map = looping_stage_to_rank(4, 2);
  ASSERT_EQ(map.size(), 8u);
  for (int st = 0; st < 8; ++st) EXPECT_EQ(map[st], st % 4);
}

}  // namespace
}  // namespace pt
