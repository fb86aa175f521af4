// Helpers for the asynchronous-schedule tests: build + lower + validate + simulate an async spec with
// the paper timelines' unit costs (F=1, B=2; AMDP's step slot = 1 unit per GPU), and parse the
// ASCII timelines of algorithms.md into (label, start column) ops so the generated order can be
// compared with the documented one cell for cell.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"
#include "pipeline/validate.h"
#include "pipeline/versions.h"

namespace pt::async_test {

struct Planned {
  Schedule compute;
  Schedule lowered;
  SimResult sim;
  bool ok = false;
};

inline ScheduleSpec spec(const std::string& kind, int S, int m, int updates) {
  ScheduleSpec s;
  s.kind = kind;
  s.ranks = S;
  s.microbatches = m;
  s.segment_updates = updates;
  return s;
}

// F=1, B=2 (Bx+Bw = 1+1). A GPU's AMDP step slot is one ALLREDUCE_GRAD (free) + one STEP per hosted
// stage: step = 1/K makes the slot 1 unit like the doc's "UU".
inline CostModel unit_costs(const Schedule& s) {
  CostModel c = CostModel::uniform(s.num_stages, 1, 1, 1);
  if (s.pipelines > 1) c.step = 1.0 / s.pipelines;
  return c;
}

inline Planned plan(const ScheduleSpec& sp) {
  Planned p;
  Status st = make_schedule(sp, &p.compute);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = validate_compute(p.compute);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = lower_communication(p.compute, &p.lowered);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = validate_lowered(p.lowered);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (!st.is_ok()) return p;
  st = simulate(p.lowered, unit_costs(p.lowered), &p.sim);
  EXPECT_TRUE(st.is_ok()) << st.message();
  p.ok = st.is_ok();
  return p;
}

// One op of a timeline: "F3", "B3" (the doc's deferred "b3" too) or "U" (step slot), and its start.
struct Op {
  std::string label;
  int start;
  bool operator==(const Op& o) const { return label == o.label && start == o.start; }
};

// Parses one doc row after its "GPU0|" / "S0|" prefix: 3-character cells; a B spans two cells;
// a '|' marks the end of a step-triggering backward (it may overwrite the label's last character).
inline std::vector<Op> parse_doc_row(const std::string& row) {
  std::vector<Op> ops;
  const std::string body = row.substr(row.find('|') + 1);
  int open_b = 0;  // cells still owed by the current B
  for (size_t c = 0; c * 3 < body.size(); ++c) {
    std::string cell = body.substr(c * 3, 3);
    const bool bar = cell.find('|') != std::string::npos;
    std::string t;
    for (char ch : cell)
      if (ch != ' ' && ch != '|') t += ch;
    if (open_b > 0) {  // second cell of a backward
      --open_b;
      continue;
    }
    if (t == "." || t.empty()) continue;
    if (t == "UU") {
      ops.push_back({"U", int(c)});
      continue;
    }
    if (t[0] == 'b') t[0] = 'B';
    if (t[0] == 'B') open_b = 1;
    (void)bar;
    ops.push_back({t, int(c)});
  }
  return ops;
}

// The simulated ops of one rank in the same form: compute actions, plus "U" at the start of each
// run of STEP/ALLREDUCE_GRAD actions that takes time (zero-cost steps are not drawn in the doc).
inline std::vector<Op> sim_ops(const Planned& p, int rank) {
  std::vector<Op> ops;
  const auto& list = p.lowered.per_rank[size_t(rank)];
  bool in_slot = false;
  for (size_t i = 0; i < list.size(); ++i) {
    const Action& a = list[i];
    const SimEvent& e = p.sim.timeline[size_t(rank)][i];
    const bool slot = a.kind == ActionKind::STEP || a.kind == ActionKind::ALLREDUCE_GRAD;
    if (slot) {
      if (!in_slot && p.lowered.pipelines > 1) ops.push_back({"U", int(e.start)});
      in_slot = true;
      continue;
    }
    in_slot = false;
    if (a.kind == ActionKind::F || a.kind == ActionKind::B)
      ops.push_back({std::string(a.kind == ActionKind::F ? "F" : "B") +
                         std::to_string(a.microbatch),
                     int(e.start)});
  }
  return ops;
}

inline std::string show(const std::vector<Op>& ops) {
  std::string s;
  for (const Op& o : ops) s += o.label + "@" + std::to_string(o.start) + " ";
  return s;
}

// Busy time of `rank` inside [t0, t1) counting compute actions only.
inline double busy_in(const Planned& p, int rank, double t0, double t1) {
  double busy = 0;
  const auto& list = p.lowered.per_rank[size_t(rank)];
  for (size_t i = 0; i < list.size(); ++i) {
    if (!is_compute(list[i].kind)) continue;
    const SimEvent& e = p.sim.timeline[size_t(rank)][i];
    busy += std::max(0.0, std::min(e.end, t1) - std::max(e.start, t0));
  }
  return busy;
}

// Start time of the first (or last) action of `kind` on `stage`.
inline double first_start(const Planned& p, ActionKind kind, int stage, bool last = false) {
  const int r = p.lowered.stage_to_rank[size_t(stage)];
  const auto& list = p.lowered.per_rank[size_t(r)];
  double t = -1;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].kind == kind && list[i].stage == stage) {
      t = p.sim.timeline[size_t(r)][i].start;
      if (!last) return t;
    }
  }
  return t;
}

}  // namespace pt::async_test
