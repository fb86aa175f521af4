// Lowering and validation: every SEND has exactly one RECV on the peer; comm groups put sends
// before receives, each sorted by peer; stages on one rank exchange nothing; per-channel receive
// order equals send order; a missing RECV is rejected by validate with the grid and the failing
// tick; a misordered receive is reported by simulate as a deadlock (no hang).
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

using testing_util::plan_or_fail;

TEST(Lower, SendsMatchReceivesOneToOne) {
  for (const ScheduleSpec& spec :
       {ScheduleSpec{"1f1b", 4, 1, 8, 0}, ScheduleSpec{"interleaved_1f1b", 2, 2, 4, 0},
        ScheduleSpec{"bfpp", 3, 4, 5, 0}, ScheduleSpec{"zb_h1", 4, 1, 6, 0}}) {
    testing_util::Planned p = plan_or_fail(spec);
    ASSERT_FALSE(::testing::Test::HasFailure());
    int sends = 0, recvs = 0, cross_edges = 0;
    for (int r = 0; r < p.lowered.num_ranks; ++r) {
      for (const Action& a : p.lowered.per_rank[r]) {
        sends += is_send(a.kind);
        recvs += is_recv(a.kind);
        if (is_comm(a.kind)) {
          EXPECT_NE(a.peer_rank, r) << format_action(a);
        }
      }
    }
    for (int st = 0; st + 1 < p.lowered.num_stages; ++st) {
      cross_edges += p.lowered.stage_to_rank[st] != p.lowered.stage_to_rank[st + 1];
    }
    // Two messages (activation forward, gradient backward) per cross-rank edge per micro-batch.
    EXPECT_EQ(sends, 2 * cross_edges * spec.microbatches) << testing_util::describe(spec);
    EXPECT_EQ(recvs, sends);
  }
}

TEST(Lower, GroupsAreSendsThenReceivesSortedByPeer) {
  // With 2 ranks and 2 chunks both neighbours are the same rank; with 3 ranks x 2 chunks a group
  // can mix peers.
  for (const ScheduleSpec& spec :
       {ScheduleSpec{"interleaved_1f1b", 3, 2, 6, 0}, ScheduleSpec{"bfpp", 3, 2, 6, 0},
        ScheduleSpec{"1f1b", 4, 1, 8, 0}}) {
    testing_util::Planned p = plan_or_fail(spec);
    ASSERT_FALSE(::testing::Test::HasFailure());
    for (const auto& list : p.lowered.per_rank) {
      size_t t = 0;
      while (t < list.size()) {
        if (!is_comm(list[t].kind)) {
          ++t;
          continue;
        }
        size_t end = t;
        while (end < list.size() && is_comm(list[end].kind)) ++end;
        bool seen_recv = false;
        int last_peer[2] = {-1, -1};
        for (size_t i = t; i < end; ++i) {
          const bool recv = is_recv(list[i].kind);
          EXPECT_FALSE(seen_recv && !recv)
              << "send after a receive in one group at " << format_action(list[i]);
          seen_recv |= recv;
          EXPECT_GE(list[i].peer_rank, last_peer[recv])
              << "group not sorted by peer at " << format_action(list[i]);
          last_peer[recv] = list[i].peer_rank;
        }
        t = end;
      }
    }
  }
}

TEST(Lower, StagesOnOneRankExchangeNothing) {
  // pp = 1 with v = 4: all four stages on rank 0.
  for (const char* kind : {"interleaved_1f1b", "bfpp"}) {
    testing_util::Planned p = plan_or_fail({kind, 1, 4, 3, 0});
    ASSERT_FALSE(::testing::Test::HasFailure());
    for (const Action& a : p.lowered.per_rank[0]) EXPECT_FALSE(is_comm(a.kind)) << format_action(a);
    EXPECT_EQ(p.lowered.per_rank[0].size(), 2u * 4u * 3u + 2u * 4u);  // + ALLREDUCE_GRAD, STEP per stage
    EXPECT_DOUBLE_EQ(p.sim.bubble_fraction, 0.0);
  }
}

TEST(Lower, ReceiveOrderEqualsSendOrderPerChannel) {
  // Interleaved with 2 ranks: channel 0 -> 1 carries activations of stage 0 and 2 and gradients of
  // stage 2.
  testing_util::Planned p = plan_or_fail({"interleaved_1f1b", 2, 2, 4, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (int src = 0; src < 2; ++src) {
    const int dst = 1 - src;
    std::vector<std::string> sent, received;
    for (const Action& a : p.lowered.per_rank[src]) {
      if (is_send(a.kind) && a.peer_rank == dst) {
        // Name the message by its receiving end so both sides compare equal.
        Action r = a;
        r.kind = a.kind == ActionKind::SEND_ACT ? ActionKind::RECV_ACT : ActionKind::RECV_GRAD;
        r.stage = a.kind == ActionKind::SEND_ACT ? a.stage + 1 : a.stage - 1;
        r.peer_rank = src;
        sent.push_back(format_action(r));
      }
    }
    for (const Action& a : p.lowered.per_rank[dst]) {
      if (is_recv(a.kind) && a.peer_rank == src) received.push_back(format_action(a));
    }
    EXPECT_EQ(sent, received) << "channel " << src << " -> " << dst;
    EXPECT_FALSE(sent.empty());
  }
}

TEST(Validate, MissingReceiveIsRejectedWithGridAndTick) {
  testing_util::Planned p = plan_or_fail({"1f1b", 4, 1, 8, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  Schedule broken = p.lowered;
  auto& list = broken.per_rank[2];
  auto it = std::find_if(list.begin(), list.end(), [](const Action& a) {
    return a.kind == ActionKind::RECV_ACT && a.microbatch == 3;
  });
  ASSERT_NE(it, list.end());
  const int removed_at = int(it - list.begin());
  list.erase(it);
  Status st = validate_lowered(broken);
  ASSERT_FALSE(st.is_ok());
  const std::string& msg = st.message();
  EXPECT_NE(msg.find("RECV_ACT"), std::string::npos) << msg;
  EXPECT_NE(msg.find("F(stage 2, mb 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<-- ERROR HERE (rank 2)"), std::string::npos) << msg;
  // The marked tick is the consuming forward, now at the removed receive's index.
  EXPECT_NE(msg.find("Tick " + std::to_string(removed_at)), std::string::npos) << msg;
  EXPECT_NE(msg.find("*2F3"), std::string::npos) << msg;
  // The simulator, given the same broken list, reports a deadlock rather than hanging.
  SimResult r;
  Status sim = simulate(broken, CostModel::uniform(4), &r);
  ASSERT_FALSE(sim.is_ok());
  EXPECT_NE(sim.message().find("deadlock"), std::string::npos) << sim.message();
}

TEST(Validate, RejectsOwnershipOrderAndCountErrors) {
  Schedule base;
  ASSERT_TRUE(make_schedule({"1f1b", 2, 1, 2, 0}, &base).is_ok());
  {
    Schedule s = base;  // B before F on rank 1
    std::swap(s.per_rank[1][0], s.per_rank[1][1]);
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("before its forward"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("<-- ERROR HERE"), std::string::npos) << st.message();
  }
  {
    Schedule s = base;  // stage 1 action on rank 0
    s.per_rank[0].push_back(s.per_rank[1][0]);
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("owned by rank 1"), std::string::npos) << st.message();
  }
  {
    Schedule s = base;  // a duplicate forward
    s.per_rank[0].push_back(s.per_rank[0][0]);
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("duplicate"), std::string::npos) << st.message();
  }
  {
    Schedule s = base;  // a missing backward (the last B, before the step tail)
    auto& l = s.per_rank[0];
    l.erase(std::find_if(l.rbegin(), l.rend(), [](const Action& a) { return a.kind == ActionKind::B; }).base() - 1);
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("no backward"), std::string::npos) << st.message();
  }
  {
    Schedule s;  // Bw before Bx
    ASSERT_TRUE(make_schedule({"zb_h1", 2, 1, 2, 0}, &s).is_ok());
    auto& l = s.per_rank[1];
    auto bx =
        std::find_if(l.begin(), l.end(), [](const Action& a) { return a.kind == ActionKind::Bx; });
    auto bw = std::find_if(l.begin(), l.end(), [&](const Action& a) {
      return a.kind == ActionKind::Bw && a.microbatch == bx->microbatch;
    });
    std::iter_swap(bx, bw);
    Status st = validate_compute(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("before its Bx"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(validate_compute(base).is_ok());
}

TEST(Validate, RejectsWrongPeerAndFifoViolation) {
  testing_util::Planned p = plan_or_fail({"1f1b", 3, 1, 4, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  {
    Schedule s = p.lowered;
    for (Action& a : s.per_rank[1]) {
      if (a.kind == ActionKind::SEND_ACT) {
        a.peer_rank = 0;
        break;
      }
    }
    Status st = validate_lowered(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("names peer 0"), std::string::npos) << st.message();
  }
  {
    // Rank 2 receives activation 1 before activation 0 (both still before their forwards):
    // deadlock-free but not FIFO, which NCCL's in-order p2p matching would turn into swapped
    // tensors.
    Schedule s = p.lowered;
    auto& l = s.per_rank[2];
    std::vector<size_t> recv_ticks;
    for (size_t t = 0; t < l.size(); ++t) {
      if (l[t].kind == ActionKind::RECV_ACT) recv_ticks.push_back(t);
    }
    ASSERT_GE(recv_ticks.size(), 2u);
    const Action second = l[recv_ticks[1]];
    l.erase(l.begin() + std::ptrdiff_t(recv_ticks[1]));
    l.insert(l.begin() + std::ptrdiff_t(recv_ticks[0]), second);  // second now precedes first
    Status st = validate_lowered(s);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("out of the order"), std::string::npos) << st.message();
  }
}

TEST(Simulate, MisorderedPairIsADeadlockNotAHang) {
  // Rank 0 waits for the gradient of micro-batch 0 before sending that micro-batch's activation: a
  // cycle.
  testing_util::Planned p = plan_or_fail({"1f1b", 2, 1, 2, 0});
  ASSERT_FALSE(::testing::Test::HasFailure());
  Schedule s = p.lowered;
  auto& l = s.per_rank[0];
  auto it = std::find_if(l.begin(), l.end(),
                         [](const Action& a) { return a.kind == ActionKind::RECV_GRAD; });
  ASSERT_NE(it, l.end());
  Action recv = *it;
  l.erase(it);
  l.insert(l.begin(), recv);
  // Static validation cannot see it (the receive is still before its consumer) ...
  EXPECT_TRUE(validate_lowered(s).is_ok());
  // ... the simulator does, and names both blocked ranks and the tick.
  SimResult r;
  Status st = simulate(s, CostModel::uniform(2), &r);
  ASSERT_FALSE(st.is_ok());
  const std::string& msg = st.message();
  EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 0 tick 0: 0RECV_GRAD0<-1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 1 tick 0: 1RECV_ACT0<-0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("<-- ERROR HERE (rank 0)"), std::string::npos) << msg;
}

}  // namespace
}  // namespace pt
