// Every builder over the acceptance grid S in {1,2,3,4,8}, m in {1, S-1, S, 2S+1, 32}, v in
// {1,2,4}: valid where allowed (or a clear Status naming the key), lowered + validated + simulated
// without deadlock, backwards in ascending micro-batch order per stage, in-flight bounds, and the
// closed-form bubbles under F=1, B=2 (Bx=Bw=1):
//   gpipe, 1f1b:              (S-1)/(m+S-1)                                  every m
//   interleaved_1f1b, bfpp:   (S-1)/(v m+S-1)      interleaved: m % S == 0; bfpp: m >= S (pure
//   breadth-first) zb_h1, m >= S:            makespan 3m + (S-1): every rank idles exactly
//   (S-1)(F+Bx-Bw) = S-1 units, against
//                             1F1B's (S-1)(F+Bx+Bw) = 3(S-1); m < S: strictly less idle than 1F1B
//                             (S > 1).
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

using testing_util::describe;
using testing_util::plan_or_fail;

std::vector<int> microbatch_grid(int S) {
  std::set<int> ms = {1, S - 1, S, 2 * S + 1, 32};
  ms.erase(0);
  return {ms.begin(), ms.end()};
}

// Per stage, the micro-batches of each compute kind must come in ascending order (gradient
// accumulation order).
void expect_ascending_per_stage(const Schedule& s, const std::string& what) {
  for (int k : {int(ActionKind::F), int(ActionKind::B), int(ActionKind::Bx), int(ActionKind::Bw)}) {
    std::vector<int> last(size_t(s.num_stages), -1);
    for (const auto& list : s.per_rank) {
      for (const Action& a : list) {
        if (int(a.kind) != k) continue;
        EXPECT_GT(a.microbatch, last[a.stage])
            << what << ": " << format_action(a) << " after mb " << last[a.stage];
        last[a.stage] = a.microbatch;
      }
    }
  }
}

double closed_form(const std::string& kind, int S, int v, int m) {
  if (kind == "gpipe" || kind == "1f1b") return double(S - 1) / double(m + S - 1);
  return double(S - 1) / double(v * m + S - 1);
}

TEST(Schedules, AcceptanceGrid) {
  int planned = 0, rejected = 0;
  for (const char* kind : {"gpipe", "1f1b", "interleaved_1f1b", "bfpp", "zb_h1"}) {
    const std::string k = kind;
    const bool chunked = k == "interleaved_1f1b" || k == "bfpp";
    for (int S : {1, 2, 3, 4, 8}) {
      for (int m : microbatch_grid(S)) {
        for (int v : {1, 2, 4}) {
          if (!chunked && v != 1) continue;
          ScheduleSpec spec{k, S, v, m, 0};
          const std::string what = describe(spec);
          if (k == "interleaved_1f1b" && m % S != 0) {
            Schedule s;
            Status st = make_schedule(spec, &s);
            ASSERT_FALSE(st.is_ok()) << what;
            EXPECT_NE(st.message().find("training.microbatches"), std::string::npos)
                << st.message();
            EXPECT_NE(st.message().find("multiple"), std::string::npos) << st.message();
            ++rejected;
            continue;
          }
          testing_util::Planned p = plan_or_fail(spec);
          if (::testing::Test::HasFailure()) return;
          ++planned;
          EXPECT_EQ(p.compute.num_stages, S * v) << what;
          expect_ascending_per_stage(p.compute, what);
          const SimResult& r = p.sim;
          if (k == "zb_h1") {
            double one_f_one_b_idle = 3.0 * (S - 1);
            for (int rank = 0; rank < S; ++rank) {
              if (m >= S) {
                EXPECT_DOUBLE_EQ(r.idle[rank], double(S - 1)) << what << " rank " << rank;
              } else if (S > 1) {
                EXPECT_LT(r.idle[rank], one_f_one_b_idle) << what << " rank " << rank;
              }
            }
            if (m >= S) {
              EXPECT_DOUBLE_EQ(r.makespan, 3.0 * m + S - 1) << what;
            }
          } else if (k == "bfpp" && m < S) {
            // Below N_PP micro-batches the loop boundary stalls (§6.3): more bubble than the closed
            // form.
            EXPECT_GE(r.bubble_fraction + 1e-12, closed_form(k, S, v, m)) << what;
          } else {
            EXPECT_NEAR(r.bubble_fraction, closed_form(k, S, v, m), 1e-12) << what;
          }
          // In-flight activations (micro-batch x stage units with F done, B/Bw not done).
          for (int st = 0; st < p.compute.num_stages; ++st) {
            const int peak = r.peak_in_flight_stage[st];
            if (k == "1f1b") {
              EXPECT_EQ(peak, std::min(S - st, m)) << what << " stage " << st;
            } else if (k == "gpipe" || k == "bfpp") {
              EXPECT_EQ(peak, m) << what << " stage " << st;
            } else if (k == "zb_h1") {
              EXPECT_LE(peak, std::min(S, m)) << what << " stage " << st;  // <= 1F1B's peak
            }
          }
          if (k == "interleaved_1f1b") {
            for (int d = 0; d < S; ++d) {
              const int warmup = std::min(2 * (S - d - 1) + (v - 1) * S, m * v);
              EXPECT_LE(r.peak_in_flight[d], std::min(warmup + 1, m * v)) << what << " rank " << d;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(planned, 100);
  EXPECT_GT(rejected, 5);
}

TEST(Schedules, BfppOrderInvariants) {
  // §6.6.2: per rank, forwards non-decreasing in local stage and all m forwards of a stage before
  // the next stage's; backwards non-increasing in local stage.
  Schedule s;
  ASSERT_TRUE(make_schedule({"bfpp", 4, 3, 8, 0}, &s).is_ok());
  for (int d = 0; d < 4; ++d) {
    int last_f = -1, last_b = 1 << 30, f_count = 0;
    for (const Action& a : s.per_rank[d]) {
      if (a.kind == ActionKind::F) {
        EXPECT_GE(a.stage, last_f);
        if (a.stage != last_f) {
          EXPECT_TRUE(last_f < 0 || f_count == 8)
              << "stage changed after " << f_count << " forwards";
          f_count = 0;
        }
        last_f = a.stage;
        ++f_count;
      } else if (is_compute(a.kind)) {  // the step tail (ALLREDUCE_GRAD, STEP) follows the flush
        EXPECT_LE(a.stage, last_b);
        last_b = a.stage;
      }
    }
  }
}

TEST(Schedules, BfppBreadthDepthHybrid) {
  // m = 8 = breadth 4 x depth 2: two sequential breadth-first fill-and-drains.
  testing_util::Planned p = plan_or_fail({"bfpp", 4, 2, 8, 4});
  ASSERT_FALSE(::testing::Test::HasFailure());
  expect_ascending_per_stage(p.compute, "bfpp hybrid");
  // Rank 0 starts group 1's forwards only after all group-0 backwards.
  const auto& r0 = p.compute.per_rank[0];
  int first_group1 = -1, last_group0_b = -1;
  for (int t = 0; t < int(r0.size()); ++t) {
    if (r0[t].microbatch >= 4 && first_group1 < 0) first_group1 = t;
    if (r0[t].microbatch < 4 && r0[t].kind == ActionKind::B) last_group0_b = t;
  }
  EXPECT_LT(last_group0_b, first_group1);
  for (int st = 0; st < 8; ++st) EXPECT_EQ(p.sim.peak_in_flight_stage[st], 4);  // breadth, not m
  // Each group pays its own fill/drain: more bubble than pure breadth-first, at most two separate
  // groups.
  testing_util::Planned pure = plan_or_fail({"bfpp", 4, 2, 8, 0});
  testing_util::Planned one_group = plan_or_fail({"bfpp", 4, 2, 4, 0});
  EXPECT_GT(p.sim.bubble_fraction, pure.sim.bubble_fraction);
  EXPECT_LE(p.sim.makespan, 2 * one_group.sim.makespan);
  EXPECT_GT(p.sim.makespan, pure.sim.makespan);

  Schedule s;
  Status st = make_schedule({"bfpp", 4, 2, 8, 3}, &s);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("schedule.bfpp_breadth"), std::string::npos) << st.message();
}

TEST(Schedules, ZbH1SplitsEveryBackward) {
  Schedule s;
  ASSERT_TRUE(make_schedule({"zb_h1", 4, 1, 8, 0}, &s).is_ok());
  for (const auto& list : s.per_rank) {
    for (const Action& a : list) EXPECT_NE(a.kind, ActionKind::B) << format_action(a);
  }
  // Rank r holds back r weight passes: the last r+1 compute actions of rank r are Bw.
  for (int r = 0; r < 4; ++r) {
    std::vector<Action> list;
    for (const Action& a : s.per_rank[r])
      if (is_compute(a.kind)) list.push_back(a);
    for (int i = 0; i <= r; ++i)
      EXPECT_EQ(list[list.size() - 1 - size_t(i)].kind, ActionKind::Bw) << "rank " << r;
    EXPECT_NE(list[list.size() - 2 - size_t(r)].kind, ActionKind::Bw) << "rank " << r;
  }
}

TEST(Schedules, RejectsBadSpecsNamingTheKey) {
  struct Case {
    ScheduleSpec spec;
    const char* key;
  };
  const Case cases[] = {
      {{"zigzag", 4, 1, 8, 0}, "schedule.kind"},
      {{"1f1b", 4, 2, 8, 0}, "schedule.chunks"},
      {{"gpipe", 4, 2, 8, 0}, "schedule.chunks"},
      {{"zb_h1", 4, 2, 8, 0}, "schedule.chunks"},
      {{"1f1b", 4, 1, 0, 0}, "training.microbatches"},
      {{"bfpp", 4, 0, 8, 0}, "schedule.chunks"},
      {{"interleaved_1f1b", 4, 2, 6, 0}, "training.microbatches"},
      {{"1f1b", 0, 1, 8, 0}, "parallel.pp"},
  };
  for (const Case& c : cases) {
    Schedule s;
    Status st = make_schedule(c.spec, &s);
    ASSERT_FALSE(st.is_ok()) << describe(c.spec);
    EXPECT_NE(st.message().find(c.key), std::string::npos)
        << describe(c.spec) << ": " << st.message();
  }
}

// The step is in the IR: a synchronous rank list ends, after its last compute action, with
// ALLREDUCE_GRAD(stage, data) for each of its stages in ascending order, then STEP(stage) in the same
// order; an asynchronous list has ALLREDUCE_GRAD(stage, data) immediately before every STEP(stage)
// and nowhere else over the data group.
TEST(Schedules, EveryListCarriesItsStep) {
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  for (int i = 0; i < count; ++i) {
    const ScheduleTraits& t = *find_schedule(kinds[i]);
    ScheduleSpec spec{kinds[i], 4, t.chunks ? 2 : 1, t.block_coordinate ? 1 : 8, 0};  // rpd: m = 1
    spec.segment_updates = t.block_coordinate ? 40 : 3;  // rpd: 40 draws reach every block (seed 0)
    Schedule s;
    ASSERT_TRUE(make_schedule(spec, &s).is_ok()) << kinds[i];
    for (int r = 0; r < s.num_ranks; ++r) {
      const auto& list = s.per_rank[size_t(r)];
      const std::string what = std::string(kinds[i]) + " rank " + std::to_string(r);
      if (!t.asynchronous) {
        std::vector<Action> want;
        for (ActionKind kind : {ActionKind::ALLREDUCE_GRAD, ActionKind::STEP})
          for (int st = 0; st < s.num_stages; ++st) {
            if (s.stage_to_rank[size_t(st)] != r) continue;
            Action a;
            a.kind = kind;
            a.stage = st;
            a.microbatch = -1;
            a.group = kind == ActionKind::ALLREDUCE_GRAD ? kGroupData : 0;
            want.push_back(a);
          }
        ASSERT_GE(list.size(), want.size()) << what;
        const std::vector<Action> tail(list.end() - ptrdiff_t(want.size()), list.end());
        EXPECT_EQ(tail, want) << what;
        for (size_t j = 0; j + want.size() < list.size(); ++j) EXPECT_TRUE(is_compute(list[j].kind)) << what;
        continue;
      }
      int steps = 0;
      for (size_t j = 0; j < list.size(); ++j) {
        const Action& a = list[j];
        if (a.kind == ActionKind::STEP) {
          ++steps;
          ASSERT_GT(j, 0u) << what;
          EXPECT_EQ(list[j - 1].kind, ActionKind::ALLREDUCE_GRAD) << what;
          EXPECT_EQ(list[j - 1].stage, a.stage) << what;
          EXPECT_EQ(list[j - 1].group, kGroupData) << what;
        }
        if (a.kind == ActionKind::ALLREDUCE_GRAD && (a.group & kGroupData)) {
          ASSERT_LT(j + 1, list.size()) << what;
          EXPECT_EQ(list[j + 1].kind, ActionKind::STEP) << what;
        }
      }
      EXPECT_GT(steps, 0) << what;
    }
  }
}

// Every user-facing rule of check_schedule_spec, in one copy, starts with the config key to change
// (never the non-existent schedule.microbatches), and make_schedule reports the same text.
TEST(Schedules, EveryRuleNamesItsConfigKey) {
  struct Case {
    const char* what;
    std::function<void(ScheduleSpec*)> set;
    const char* key;
  };
  auto base = [](const char* kind, int pp, int m) { return [=](ScheduleSpec* s) { s->kind = kind, s->ranks = pp, s->microbatches = m; }; };
  const Case cases[] = {
      {"unknown kind", base("zigzag", 4, 8), "schedule.kind"},
      {"pp < 1", base("1f1b", 0, 8), "parallel.pp"},
      {"m < 1", base("gpipe", 4, 0), "training.microbatches"},
      {"chunks < 1", [](ScheduleSpec* s) { s->kind = "bfpp", s->chunks = 0; }, "schedule.chunks"},
      {"chunks > 1 on one stage per rank", [](ScheduleSpec* s) { s->kind = "zb_h1", s->chunks = 2; }, "schedule.chunks"},
      {"chunks > 1 async", [](ScheduleSpec* s) { s->kind = "paci", s->chunks = 2; }, "schedule.chunks"},
      {"breadth does not divide m", [](ScheduleSpec* s) { s->kind = "bfpp", s->chunks = 2, s->bfpp_breadth = 3; },
       "schedule.bfpp_breadth"},
      {"breadth < 0", [](ScheduleSpec* s) { s->kind = "bfpp", s->bfpp_breadth = -1; }, "schedule.bfpp_breadth"},
      {"interleaved m % pp", [](ScheduleSpec* s) { s->kind = "interleaved_1f1b", s->chunks = 2, s->microbatches = 6; },
       "training.microbatches"},
      {"tied embeddings async", [](ScheduleSpec* s) { s->kind = "pipedream", s->tie_embeddings = true; },
       "model.tie_embeddings"},
      {"2bw m < S", base("pipedream_2bw", 4, 3), "training.microbatches"},
      {"paci mode", [](ScheduleSpec* s) { s->kind = "paci", s->paci_mode = "fast"; }, "schedule.paci.mode"},
      {"paci mem off paci", [](ScheduleSpec* s) { s->kind = "localsgd", s->paci_mode = "mem"; }, "schedule.paci.mode"},
      {"lagging on paci_flush", [](ScheduleSpec* s) { s->kind = "paci_flush", s->paci_allowed_lagging = {4, 3, 2, 1}; },
       "schedule.paci.allowed_lagging"},
      {"lagging length", [](ScheduleSpec* s) { s->kind = "paci", s->paci_allowed_lagging = {1, 1}; },
       "schedule.paci.allowed_lagging"},
      {"lagging range", [](ScheduleSpec* s) { s->kind = "paci", s->paci_allowed_lagging = {4, 3, 3, 1}; },
       "schedule.paci.allowed_lagging"},
      {"lagging zero", [](ScheduleSpec* s) { s->kind = "paci", s->paci_allowed_lagging = {0, 1, 1, 1}; },
       "schedule.paci.allowed_lagging"},
      {"step_slot value", [](ScheduleSpec* s) { s->kind = "amdp", s->amdp_step_slot = "late"; }, "schedule.amdp.step_slot"},
      {"step_slot off amdp", [](ScheduleSpec* s) { s->kind = "1f1b", s->amdp_step_slot = "reference"; },
       "schedule.amdp.step_slot"},
      {"zero_owner off amdp", [](ScheduleSpec* s) { s->kind = "paci", s->amdp_zero_owner = false; },
       "schedule.amdp.zero_owner"},
      {"amdp odd pp", base("amdp", 3, 6), "parallel.pp"},
      {"amdp m % pp", base("amdp", 4, 6), "training.microbatches"},
      {"amdp reference pp", [](ScheduleSpec* s) { s->kind = "amdp", s->ranks = 6, s->microbatches = 6,
                                                  s->amdp_step_slot = "reference"; },
       "schedule.amdp.step_slot"},
      {"amdp reference needs owner", [](ScheduleSpec* s) { s->kind = "amdp", s->amdp_step_slot = "reference",
                                                           s->amdp_zero_owner = false; },
       "schedule.amdp.step_slot"},
      {"segment length", [](ScheduleSpec* s) { s->kind = "pipedream", s->segment_updates = 0; }, "segment_updates"},
      {"localsgd copies", [](ScheduleSpec* s) { s->kind = "localsgd", s->localsgd_copies = -1; },
       "schedule.localsgd.copies"},
      {"localsgd local_steps", [](ScheduleSpec* s) { s->kind = "localsgd", s->localsgd_local_steps = 0; },
       "schedule.localsgd.local_steps"},
      {"localsgd m % copies", [](ScheduleSpec* s) { s->kind = "localsgd", s->localsgd_copies = 3; },
       "training.microbatches"},
      {"localsgd keys off localsgd", [](ScheduleSpec* s) { s->kind = "pipedream", s->localsgd_local_steps = 4; },
       "schedule.localsgd.copies"},
  };
  for (const Case& c : cases) {
    ScheduleSpec spec{"1f1b", 4, 1, 8, 0};
    c.set(&spec);
    Status st = check_schedule_spec(spec);
    ASSERT_FALSE(st.is_ok()) << c.what;
    EXPECT_EQ(st.message().rfind(c.key, 0), 0u) << c.what << ": " << st.message();  // starts with the key
    EXPECT_EQ(st.message().find("schedule.microbatches"), std::string::npos) << c.what << ": " << st.message();
    Schedule s;
    Status built = make_schedule(spec, &s);  // the builders use the same check, word for word
    ASSERT_FALSE(built.is_ok()) << c.what;
    EXPECT_EQ(built.message(), st.message()) << c.what;
  }
  // The defaults of every kind pass.
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  for (int i = 0; i < count; ++i) {
    ScheduleSpec spec{kinds[i], 4, 1, find_schedule(kinds[i])->block_coordinate ? 1 : 8, 0};  // rpd: m = 1
    EXPECT_TRUE(check_schedule_spec(spec).is_ok()) << kinds[i] << ": " << check_schedule_spec(spec).message();
  }
}

TEST(Schedules, RegistryListsEveryKind) {
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  ASSERT_EQ(count, 12);  // 5 synchronous + 6 asynchronous (async_schedules_test covers those) + rpd
  for (int i = 0; i < count; ++i) {
    Schedule s;
    Status st = make_schedule({kinds[i], 2, 1, find_schedule(kinds[i])->block_coordinate ? 1 : 4, 0}, &s);
    EXPECT_TRUE(st.is_ok()) << kinds[i] << ": " << st.message();
    EXPECT_EQ(s.name, kinds[i]);
  }
}

}  // namespace
TEST(Schedules, DefaultKindIsRegistered) {
  ASSERT_NE(find_schedule(kDefaultScheduleKind), nullptr) << "schedule.kind's default must be a registry entry";
  EXPECT_FALSE(find_schedule(kDefaultScheduleKind)->asynchronous);
}

}  // namespace pt
