#include "pipeline/schedules/delay_law.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>

#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"

namespace pt {
namespace {

// One compute op of the simulated timeline.
struct TimedOp {
  double start;
  int stage;
  bool backward;
  int microbatch;
  bool operator<(const TimedOp& o) const { return std::tie(start, stage) < std::tie(o.start, o.stage); }
};

Status simulated_ops(int S, int N, std::vector<TimedOp>* ops) {
  ScheduleSpec spec;
  spec.kind = "pipedream";
  spec.ranks = S;
  spec.microbatches = 1;  // an update per backward
  spec.segment_updates = N;
  Schedule compute, lowered;
  SimResult sim;
  PT_RETURN_IF_ERROR(make_schedule(spec, &compute));
  PT_RETURN_IF_ERROR(lower_communication(compute, &lowered));
  PT_RETURN_IF_ERROR(simulate(lowered, CostModel::uniform(S, 1, 0.5, 0.5), &sim));  // F = B = 1
  for (int r = 0; r < S; ++r) {
    const auto& list = lowered.per_rank[size_t(r)];
    for (size_t i = 0; i < list.size(); ++i) {
      const Action& a = list[i];
      if (a.kind == ActionKind::F || a.kind == ActionKind::B)
        ops->push_back({sim.timeline[size_t(r)][i].start, a.stage, a.kind == ActionKind::B, a.microbatch});
    }
  }
  std::sort(ops->begin(), ops->end());
  return Status::ok();
}

// The backwards of the simulated timeline in update order, as (micro-batch, stage), and h.
struct GlobalOrder {
  std::vector<std::pair<int, int>> backwards;
  std::map<std::pair<int, int>, long> h;  // (micro-batch, stage) -> updates before its forward
};

Status global_order(int S, int N, GlobalOrder* out) {
  std::vector<TimedOp> ops;
  PT_RETURN_IF_ERROR(simulated_ops(S, N, &ops));
  for (const TimedOp& op : ops) {
    if (op.backward) out->backwards.push_back({op.microbatch, op.stage});
    else out->h[{op.microbatch, op.stage}] = long(out->backwards.size());
  }
  return Status::ok();
}

}  // namespace

Status pipedream_update_order(int S, int64_t updates, std::vector<PipeDreamUpdate>* out) {
  // Micro-batch i's backwards are about the (S i)-th updates; 4 S more keep the drain away.
  const int64_t n = (updates + S - 1) / S + 4 * S + 4;
  if (S < 1 || n > (int64_t(1) << 30)) return Status::error("pipedream order: bad size");
  GlobalOrder g;
  PT_RETURN_IF_ERROR(global_order(S, int(n), &g));
  out->clear();
  for (int64_t k = 0; k < updates; ++k) {
    const auto [i, s] = g.backwards[size_t(k)];
    PipeDreamUpdate u;
    u.microbatch = i;
    u.stage = s;
    for (int j = 0; j < S; ++j) u.delays.push_back(int(k - g.h.at({i, j})));
    out->push_back(std::move(u));
  }
  return Status::ok();
}

Status pipedream_global_delay(int S, int N, GlobalDelayLaw* out) {
  if (S < 2 || N < 6 * S)
    return Status::error("delays: need S >= 2 stages and >= 6 S micro-batches (got S = " + std::to_string(S) +
                         ", " + std::to_string(N) + ")");
  GlobalOrder g;
  PT_RETURN_IF_ERROR(global_order(S, N, &g));
  const auto& h = g.h;
  std::vector<std::pair<long, int>> backwards;  // (k, micro-batch)
  for (size_t k = 0; k < g.backwards.size(); ++k) backwards.push_back({long(k), g.backwards[k].first});
  GlobalDelayLaw law;
  law.stages = S;
  law.microbatches = N;
  double sum = 0;
  for (const auto& [k, i] : backwards) {
    if (i < N / 2 || i >= N - 2 * S) continue;  // warm-up and drain
    for (int j = 0; j < S; ++j) {
      const long d = k - h.at({i, j});
      law.max_delay = std::max(law.max_delay, int(d));
      sum += double(d);
      ++law.pairs;
    }
  }
  law.mean_delay = law.pairs > 0 ? sum / double(law.pairs) : 0;
  *out = law;
  return Status::ok();
}

}  // namespace pt
