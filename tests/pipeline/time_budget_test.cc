// Simulated-time budget matching (pipeline/time_budget.h; algorithms.md §5.6 invariant 6): for
// every registered kind at S in {2, 4, 8} and several budgets T, the answer U has length(U) <= T
// < length(U + 1), equals a linear scan from U = 0, and the lengths are the simulator's own.
// Closed form for 1f1b at unit costs: a step of m micro-batches lasts 3(m + S - 1).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "pipeline/time_budget.h"
#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

using testing_util::describe;

// The first of a few specs the kind accepts at S ranks (m = 1 first: an update per micro-batch,
// §5.4's unit); false when it accepts none. Every kind must accept one at S = 4 and 8 (a new
// kind with other rules adds its spec here); at S = 2 some need not (AMDP's pipelines).
bool spec_for(const std::string& kind, int S, ScheduleSpec* out) {
  for (int m : {1, S, 2 * S})
    for (int chunks : {1, 2}) {
      ScheduleSpec s;
      s.kind = kind;
      s.ranks = S;
      s.chunks = chunks;
      s.microbatches = m;
      if (check_schedule_spec(s).is_ok()) {
        *out = s;
        return true;
      }
    }
  return false;
}

double length_or_fail(const ScheduleSpec& s, const CostModel& c, int64_t u) {
  double len = 0;
  const Status st = simulated_length(s, c, u, &len);
  EXPECT_TRUE(st.is_ok()) << describe(s) << ": " << st.message();
  return len;
}

TEST(TimeBudget, EveryKindFitsTheLargestCountAndOneMoreExceeds) {
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  int checked = 0;
  for (int k = 0; k < count; ++k)
    for (int S : {2, 4, 8}) {
      ScheduleSpec spec;
      const bool found = spec_for(kinds[k], S, &spec);
      EXPECT_TRUE(found || S == 2) << kinds[k] << " accepts none of the specs tried at S=" << S;
      if (!found) continue;
      const CostModel costs = CostModel::uniform(S * spec.chunks);  // per chain stage
      const double one = length_or_fail(spec, costs, 1);
      ASSERT_GT(one, 0) << describe(spec);
      // Linear scan: length of U = 0, 1, ...; the answer for T is the last U before the first
      // length > T.
      std::vector<double> len = {0.0};
      auto length = [&](int64_t u) {
        while (int64_t(len.size()) <= u) {
          len.push_back(length_or_fail(spec, costs, int64_t(len.size())));
          EXPECT_GE(len.back(), len[len.size() - 2]) << describe(spec) << " U=" << len.size() - 1;
        }
        return len[size_t(u)];
      };
      for (double T : {one - 0.5, one, 2.5 * one, length(7), length(9) + 0.25, length(11) - 0.25}) {
        ASSERT_FALSE(::testing::Test::HasFailure());
        BudgetFit fit;
        const Status st = fit_time_budget(spec, costs, T, &fit);
        ASSERT_TRUE(st.is_ok()) << describe(spec) << ": " << st.message();
        int64_t scan = 0;
        while (length(scan + 1) <= T) ++scan;
        EXPECT_EQ(fit.updates, scan) << describe(spec) << " T=" << T;
        EXPECT_EQ(fit.microbatches, fit.updates * spec.microbatches);
        EXPECT_LE(fit.length, T) << describe(spec);
        EXPECT_GT(fit.next_length, T) << describe(spec);
        EXPECT_EQ(fit.length, length(fit.updates)) << describe(spec);
        EXPECT_EQ(fit.next_length, length(fit.updates + 1)) << describe(spec);
        ++checked;
      }
    }
  EXPECT_GE(checked, 6 * 2 * count);  // every kind at S = 4 and 8
}

TEST(TimeBudget, OneFOneBClosedFormAndPipedreamAgainstMakespan) {
  for (int S : {2, 4, 8}) {
    for (int m : {1, 4}) {
      ScheduleSpec s;
      s.kind = "1f1b";
      s.ranks = S;
      s.microbatches = m;
      const double step = 3.0 * (m + S - 1);  // F = 1, B = 2: (m + S - 1) slots of 3
      for (double T : {100.0, 1000.0, 2000.5}) {
        BudgetFit fit;
        ASSERT_TRUE(fit_time_budget(s, CostModel::uniform(S), T, &fit).is_ok());
        EXPECT_EQ(fit.updates, int64_t(std::floor(T / step))) << "S=" << S << " m=" << m << " T=" << T;
        EXPECT_EQ(fit.length, double(fit.updates) * step);
      }
    }
    // PipeDream, an update per micro-batch: the length is the makespan of one drained segment of
    // U micro-batches, the same list the trainer runs.
    ScheduleSpec pd;
    pd.kind = "pipedream";
    pd.ranks = S;
    BudgetFit fit;
    ASSERT_TRUE(fit_time_budget(pd, CostModel::uniform(S), 500, &fit).is_ok());
    pd.segment_updates = int(fit.updates);
    testing_util::Planned p = testing_util::plan_or_fail(pd);
    EXPECT_EQ(p.sim.makespan, fit.length) << "S=" << S;
    EXPECT_GT(fit.updates, 500 / 3 - 3 * S) << "S=" << S;  // steady state: one F + one B (3 units) per update
  }
}

TEST(TimeBudget, RejectsBadBudgetsAndUnknownKinds) {
  ScheduleSpec s;
  s.kind = "1f1b";
  s.ranks = 2;
  BudgetFit fit;
  for (double T : {-1.0, std::numeric_limits<double>::infinity(), std::nan("")}) {
    const Status st = fit_time_budget(s, CostModel::uniform(2), T, &fit);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("time budget"), std::string::npos) << st.message();
  }
  s.kind = "zigzag";
  const Status st = fit_time_budget(s, CostModel::uniform(2), 10, &fit);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("schedule.kind"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace pt
