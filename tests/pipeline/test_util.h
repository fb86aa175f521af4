// Helpers for the pipeline tests: build + lower + validate + simulate one spec, failing the test
// with the Status message (which carries the schedule grid) on any error.
#pragma once

#include <gtest/gtest.h>

#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"
#include "pipeline/validate.h"

namespace pt::testing_util {

struct Planned {
  Schedule compute;
  Schedule lowered;
  SimResult sim;
};

// Unit-time plan (F=1, Bx=1, Bw=1); asserts every stage succeeds.
inline Planned plan_or_fail(const ScheduleSpec& spec) {
  Planned p;
  Status st = make_schedule(spec, &p.compute);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = lower_communication(p.compute, &p.lowered);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = validate_lowered(p.lowered);
  EXPECT_TRUE(st.is_ok()) << st.message();
  st = simulate(p.lowered, CostModel::uniform(p.lowered.num_stages), &p.sim);
  EXPECT_TRUE(st.is_ok()) << st.message();
  return p;
}

inline std::string describe(const ScheduleSpec& s) {
  return s.kind + " ranks=" + std::to_string(s.ranks) + " chunks=" + std::to_string(s.chunks) +
         " m=" + std::to_string(s.microbatches) + " breadth=" + std::to_string(s.bfpp_breadth);
}

}  // namespace pt::testing_util
