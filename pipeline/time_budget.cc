#include "pipeline/time_budget.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "pipeline/lower.h"

namespace pt {

namespace {

// Updates simulated in one segment at most (~S x 2 x this many actions per rank).
constexpr int64_t kMaxUpdates = int64_t(1) << 22;

// `costs` per chain stage, repeated for the replicas of each (AMDP's virtual stage v = p·L + s
// costs as model stage s = v mod L).
CostModel for_stages(const CostModel& costs, const Schedule& lowered) {
  const size_t L = size_t(chain_length(lowered)), n = size_t(lowered.num_stages);
  if (costs.forward.size() != L || n == L) return costs;  // simulate() reports a wrong size
  CostModel c = costs;
  c.forward.resize(n);
  c.backward_input.resize(n);
  c.backward_weight.resize(n);
  for (size_t v = L; v < n; ++v) {
    c.forward[v] = costs.forward[v % L];
    c.backward_input[v] = costs.backward_input[v % L];
    c.backward_weight[v] = costs.backward_weight[v % L];
  }
  return c;
}

double makespan_of(const ScheduleSpec& spec, const CostModel& costs, int64_t updates, Status* st) {
  ScheduleSpec s = spec;
  s.segment_updates = int(updates);
  Schedule compute, lowered;
  SimResult sim;
  *st = make_schedule(s, &compute);
  if (st->is_ok()) *st = lower_communication(compute, &lowered);
  if (st->is_ok()) *st = simulate(lowered, for_stages(costs, lowered), &sim, SimOptions{false});
  return sim.makespan;
}

}  // namespace

Status simulated_length(const ScheduleSpec& spec, const CostModel& costs, int64_t updates, double* length) {
  const ScheduleTraits* t = find_schedule(spec.kind);
  if (t == nullptr) return check_schedule_spec(spec);  // names the kind and the known ones
  if (updates < 1 || updates > kMaxUpdates)
    return Status::error("time budget: " + std::to_string(updates) + " updates is outside [1, " +
                         std::to_string(kMaxUpdates) + "]");
  Status st;
  // A synchronous step starts on an empty pipeline: U steps last U x one step.
  const double one = makespan_of(spec, costs, t->asynchronous ? updates : 1, &st);
  PT_RETURN_IF_ERROR(st);
  *length = t->asynchronous ? one : double(updates) * one;
  return Status::ok();
}

Status fit_time_budget(const ScheduleSpec& spec, const CostModel& costs, double budget, BudgetFit* out) {
  if (!std::isfinite(budget) || budget < 0)
    return Status::error("time budget must be a finite number >= 0, got " + std::to_string(budget));
  BudgetFit fit;
  double len = 0;
  PT_RETURN_IF_ERROR(simulated_length(spec, costs, 1, &len));
  if (!(len > 0)) return Status::error("time budget: one update of '" + spec.kind + "' takes no simulated time");
  // Doubling until U + 1 no longer fits, then bisection on [lo fits, hi does not].
  int64_t lo = 0, hi = 1;
  double lo_len = 0, hi_len = len;
  while (hi_len <= budget) {
    lo = hi;
    lo_len = hi_len;
    if (hi >= kMaxUpdates) return Status::error("time budget " + std::to_string(budget) + " fits more than " +
                                                std::to_string(kMaxUpdates) + " updates");
    hi = std::min(2 * hi, kMaxUpdates);
    PT_RETURN_IF_ERROR(simulated_length(spec, costs, hi, &hi_len));
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    double mid_len = 0;
    PT_RETURN_IF_ERROR(simulated_length(spec, costs, mid, &mid_len));
    if (mid_len <= budget) {
      lo = mid;
      lo_len = mid_len;
    } else {
      hi = mid;
      hi_len = mid_len;
    }
  }
  fit.updates = lo;
  fit.microbatches = lo * spec.microbatches;
  fit.length = lo_len;
  fit.next_length = hi_len;
  *out = fit;
  return Status::ok();
}

}  // namespace pt
