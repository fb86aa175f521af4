// PipeDream (algorithms.md §1.4) as a pure generator of one drained segment: async 1F1B without
// flush, stage 0 admits a micro-batch while fewer than NOAM = S are in flight, the other stages
// forward whenever their input is there and no gradient waits (backward first). STEP(s) after every
// m-th backward on s (m = accumulation; 1 = the original's update per micro-batch). Weight stashing:
// F reads the live version, B reads its F's version, so drift is 0 and the steady-state delay is
// S-1-s updates (m = 1). The order is event-simulated once with F=1, B=2 and then fixed.
#include <climits>

#include "pipeline/schedules/async_common.h"
#include "pipeline/schedules/common.h"

namespace pt {

namespace schedules_internal {

// PipeDream's order (shared with 2BW): NOAM = S at stage 0, no cap elsewhere (a stage s > 0 never
// holds more than stage 0 does: its forwards are a prefix of stage 0's, its backwards a superset).
Schedule pipedream_order(const ScheduleSpec& spec, const char* name) {
  WorkerLoopRule rule;
  rule.stages = spec.ranks;
  rule.total = spec.microbatches * spec.segment_updates;
  rule.step_every = spec.microbatches;
  rule.allowed_lagging.assign(size_t(spec.ranks), INT_MAX);
  rule.allowed_lagging[0] = spec.ranks;
  ScheduleSpec shell = spec;
  shell.microbatches = rule.total;
  Schedule s = empty_schedule(shell, name);
  s.per_rank = run_worker_loop(rule);
  return s;
}

}  // namespace schedules_internal

Status build_pipedream(const ScheduleSpec& spec, Schedule* out) {
  Schedule s = schedules_internal::pipedream_order(spec, "pipedream");
  schedules_internal::assign_live_versions(&s, /*stash=*/true);
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
