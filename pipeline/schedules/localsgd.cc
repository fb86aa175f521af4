// LocalSGD-1F1B (algorithms.md §5.4), the comparator of Randomized PipeDream, as a pure generator
// of one drained segment. M independent model copies share the S pipeline ranks: copy p holds the
// virtual stages p*S + s, all of stage s's copies on rank s (Schedule::pipelines = M). Micro-batch
// g (ids of update k: k*m .. k*m + m-1) belongs to copy g mod M, so every update gives each copy
// a = m/M micro-batches (a = 1: an update per backward, as pipedream with m = 1).
// Order: PipeDream's greedy worker loop (backward first, async_common.h), event-simulated once with
// F = B = 1 (§5.4) and then fixed, with two extra rules:
//   * zero staleness: F of g on stage s waits until the copy's backwards of the previous update
//     are done there (a = 1: the backward of g - M), so the forward reads the version its gradient
//     is applied to;
//   * round barrier: a round is K updates (K*m micro-batches); stage 0 starts the next round once
//     the round's last backward is done there (it is the round's last op: backwards flow to
//     stage 0 and run in ascending order on every stage).
// STEP(p*S + s) right after the copy's last backward of an update on s (make_schedule adds the
// data-parallel ALLREDUCE_GRAD before it). AVERAGE(s):rep right after the round's last backward on
// rank s (and after the segment's last one, which ends a shorter round when the segment is not a
// whole number of rounds: config validation forbids that for training runs). F and B read the live
// version (no stashing; there is nothing to stash).
#include <climits>

#include "common/check.h"
#include "pipeline/schedules/async_common.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

namespace {

int copies_of(const ScheduleSpec& spec) { return spec.localsgd_copies > 0 ? spec.localsgd_copies : spec.ranks; }

// The worker-loop rule with LocalSGD's zero-staleness and round-barrier conditions.
schedules_internal::WorkerLoopRule localsgd_rule(int S, int M, int m, int round, int total) {
  schedules_internal::WorkerLoopRule rule;
  rule.stages = S;
  rule.total = total;
  rule.step_every = INT_MAX;  // the copies' STEPs are placed afterwards
  // §5.4's convention F = B = 1, so the §5.4 timeline is reproduced cell for cell. (At F=1, B=2
  // the order fixed at F=1, B=2 is no shorter: equal makespans measured for S = 4, 8, K = 1, 2, 4.)
  rule.backward_cost = 1;
  rule.allowed_lagging.assign(size_t(S), INT_MAX);
  rule.may_forward = [=](int s, int g, const std::vector<int>& backwards) {
    // The copy's last micro-batch of the previous update, g - (g mod m) - M + (g mod M), is done.
    if (g >= m && backwards[size_t(s)] < g - g % m - M + g % M + 1) return false;
    return s != 0 || g % round != 0 || backwards[0] == g;
  };
  return rule;
}

}  // namespace

Status schedules_internal::check_localsgd(const ScheduleSpec& spec) {
  if (spec.localsgd_copies < 0)
    return Status::error("schedule.localsgd.copies must be 0 (= parallel.pp) or >= 1, got " +
                         std::to_string(spec.localsgd_copies));
  if (spec.localsgd_local_steps < 1)
    return Status::error("schedule.localsgd.local_steps (updates per round between two averages) must be >= 1, got " +
                         std::to_string(spec.localsgd_local_steps));
  const int M = copies_of(spec);
  if (spec.microbatches % M != 0)
    return Status::error("training.microbatches = " + std::to_string(spec.microbatches) +
                         " is not a multiple of schedule.localsgd.copies = " + std::to_string(M) +
                         ": every update gives each of the M copies m/M micro-batches (m = M: an update per "
                         "backward)");
  return Status::ok();
}

Status build_localsgd(const ScheduleSpec& spec, Schedule* out) {
  const int S = spec.ranks, M = copies_of(spec), m = spec.microbatches;
  PT_CHECK(M >= 1 && m % M == 0);  // check_localsgd
  const int N = m * spec.segment_updates, round = m * spec.localsgd_local_steps;
  Schedule s;
  s.num_ranks = S;
  s.num_stages = M * S;
  s.model_stages = S;
  s.pipelines = M;
  s.microbatches = N;
  s.name = "localsgd";
  for (int v = 0; v < M * S; ++v) s.stage_to_rank.push_back(v % S);
  s.per_rank.assign(size_t(S), {});
  const auto order = schedules_internal::run_worker_loop(localsgd_rule(S, M, m, round, N));
  for (int r = 0; r < S; ++r) {
    auto& list = s.per_rank[size_t(r)];
    for (const Action& a : order[size_t(r)]) {
      const int g = a.microbatch, v = (g % M) * S + r;
      list.push_back(compute(a.kind, v, g));
      if (a.kind != ActionKind::B) continue;
      if (g % m >= m - M) list.push_back(compute(ActionKind::STEP, v, -1));  // the copy's last of the update
      if ((g + 1) % round == 0 || g == N - 1) {
        list.push_back(compute(ActionKind::AVERAGE, r, -1));
        list.back().group = kGroupReplicas;
      }
    }
  }
  schedules_internal::assign_live_versions(&s, /*stash=*/false);
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
