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

}  // namespace

Status pipedream_global_delay(int S, int N, GlobalDelayLaw* out) {
  if (S < 2 || N < 6 * S)
    return Status::error("delays: need S >= 2 stages and >= 6 S micro-batches (got S = " + std::to_string(S) +
                         ", " + std::to_string(N) + ")");
  std::vector<TimedOp> ops;
  PT_RETURN_IF_ERROR(simulated_ops(S, N, &ops));
  std::map<std::pair<int, int>, long> h;  // (micro-batch, stage) -> updates before its forward
  std::vector<std::pair<long, int>> backwards;  // (k, micro-batch)
  long updates = 0;
  for (const TimedOp& op : ops) {
    if (op.backward) backwards.push_back({updates++, op.microbatch});
    else h[{op.microbatch, op.stage}] = updates;
  }
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
