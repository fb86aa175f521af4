// Simulated-time budget matching (algorithms.md §5.4 protocol, §5.6 invariant 6): every method
// trains for the same simulated time T, each with the most work whose timeline fits in T.
//
// The unit of work is one optimizer update of spec.microbatches = m micro-batches, the least
// any kind can train (m = 1, as in §5.4: one micro-batch). The timeline of U updates is what a
// run of U updates without a drain point in between executes: for an asynchronous kind one
// drained segment (make_schedule with segment_updates = U), for a synchronous kind U flushed
// steps one after the other (U x the makespan of one step, as the run's sim_time sums them).
// Its length is the makespan of the lowered lists under `costs` (pipeline/simulate.h).
// Invariant of the answer: length(U) <= T < length(U + 1). The kind comes from the registry
// (ScheduleTraits::asynchronous), so every registered kind is handled alike.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"

namespace pt {

struct BudgetFit {
  int64_t updates = 0;       // U: 0 when even one update exceeds the budget
  int64_t microbatches = 0;  // U x m
  double length = 0;         // simulated length of U updates (<= budget; 0 for U = 0)
  double next_length = 0;    // of U + 1 updates (> budget)
};

// Simulated length of `updates` (>= 1) updates of `spec` (its segment_updates is ignored).
// `costs` has one entry per stage of a pipeline chain (spec.ranks x spec.chunks); the replicas
// of a chain stage (AMDP's pipelines) cost what it costs.
Status simulated_length(const ScheduleSpec& spec, const CostModel& costs, int64_t updates, double* length);

// The largest U with simulated_length(U) <= budget (file comment), found by doubling and
// bisection; the answer always has length(U) <= budget < length(U + 1). Errors: the spec's own
// (check_schedule_spec), a budget that is not finite and >= 0, an update that takes no time.
Status fit_time_budget(const ScheduleSpec& spec, const CostModel& costs, double budget, BudgetFit* out);

}  // namespace pt
