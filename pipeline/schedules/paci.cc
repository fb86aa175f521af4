// PACI (algorithms.md §3.2) and its flush baseline as pure generators of one drained segment.
// Each stage runs the authors' worker loop (backward first; forward while in_flight_s <
// allowed_lagging_s, default S-s; STEP after every a-th local backward), event-simulated once with
// F=1, B=2 to fix the per-rank order. F and B read the live weights (no stashing), so drift is
// what the order makes it: <= ceil((S-1-s)/a), 0 on the last stage (§3.3; asserted in
// tests/pipeline/async_schedules_test.cc). paci_flush adds §3.2 item 7's admission rule on stage 0
// and equals 1F1B-flush with drift 0.
#include <climits>
#include <string>

#include "pipeline/schedules/async_common.h"
#include "pipeline/schedules/common.h"

namespace pt {

Status schedules_internal::check_paci(const ScheduleSpec& spec) {
  const int S = spec.ranks;
  const auto& caps = spec.paci_allowed_lagging;
  if (caps.empty()) return Status::ok();
  // Range [1, S-s]: 0 would never admit a forward (deadlock); above S-s a stage would hold more
  // activations than 1F1B-flush (§3.5 item 1) and the drift law of §3.3 no longer holds.
  if (int(caps.size()) != S) {
    return Status::error("schedule.paci.allowed_lagging must list one value per stage (" +
                         std::to_string(S) + " for parallel.pp = " + std::to_string(S) +
                         ") or be 'auto' (S-s), got " + std::to_string(caps.size()) + " values");
  }
  for (int s = 0; s < S; ++s) {
    if (caps[size_t(s)] < 1 || caps[size_t(s)] > S - s) {
      return Status::error("schedule.paci.allowed_lagging[" + std::to_string(s) +
                           "] = " + std::to_string(caps[size_t(s)]) + " is out of range: stage " +
                           std::to_string(s) + " of " + std::to_string(S) +
                           " needs 1 <= allowed_lagging <= S-s = " + std::to_string(S - s));
    }
  }
  return Status::ok();
}

namespace {

Status build(const ScheduleSpec& spec, bool flush, Schedule* out) {
  const int S = spec.ranks;
  const int a = spec.microbatches;
  schedules_internal::WorkerLoopRule rule;
  rule.stages = S;
  rule.total = a * spec.segment_updates;
  rule.step_every = a;
  rule.flush_group = flush ? a : 0;
  rule.allowed_lagging = spec.paci_allowed_lagging;  // check_paci: S values in [1, S-s]
  if (rule.allowed_lagging.empty())
    for (int s = 0; s < S; ++s) rule.allowed_lagging.push_back(S - s);
  ScheduleSpec shell = spec;
  shell.microbatches = rule.total;
  Schedule s = schedules_internal::empty_schedule(shell, flush ? "paci_flush" : "paci");
  s.per_rank = schedules_internal::run_worker_loop(rule);
  schedules_internal::assign_live_versions(&s, /*stash=*/false);
  *out = std::move(s);
  return Status::ok();
}

}  // namespace

Status build_paci(const ScheduleSpec& spec, Schedule* out) { return build(spec, false, out); }
Status build_paci_flush(const ScheduleSpec& spec, Schedule* out) { return build(spec, true, out); }

}  // namespace pt
