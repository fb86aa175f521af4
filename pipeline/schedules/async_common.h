// Shared machinery of the asynchronous generators (pipedream, pipedream_2bw, paci, paci_flush):
// the per-stage worker loop of algorithms.md §3.2 / §1.4, event-simulated once with integer unit
// costs (F=1, B=2 by default) to FIX the order of every rank's list, and the version assignment that
// turns that order into Action::version values. Invariants of run_worker_loop's output:
//   * one stage per rank (stage s on rank s); forwards AND backwards on a stage in ascending
//     micro-batch order (inputs and gradients arrive FIFO), so one STEP after every
//     `step_every`-th backward applies exactly the micro-batches of one update;
//   * a stage never starts a forward while in_flight >= allowed_lagging[s];
//   * the list ends drained: all N micro-batches forwarded and backwarded on every stage.
#pragma once

#include <climits>
#include <functional>
#include <vector>

#include "pipeline/schedules/schedules.h"

namespace pt::schedules_internal {

struct WorkerLoopRule {
  int stages = 1;
  int total = 1;                     // N micro-batches of the segment, ids 0..N-1
  std::vector<int> allowed_lagging;  // per stage; INT_MAX = unbounded
  int flush_group = 0;  // > 0: stage 0 also needs (fwd-bwd) < S and (fwd % a != 0 or fwd == bwd)
  int step_every = 1;   // STEP(s) right after every step_every-th backward on s
  int forward_cost = 1;
  int backward_cost = 2;
  // An extra condition for stage s to forward micro-batch g, given every stage's count of
  // backwards done (LocalSGD's zero staleness and round barrier); empty = none.
  std::function<bool(int s, int g, const std::vector<int>& backwards)> may_forward;
};

// Per-stage ordered F/B/STEP lists (versions left 0). Backward first, then forward (§3.2 items 1-2).
std::vector<std::vector<Action>> run_worker_loop(const WorkerLoopRule& rule);

// Sets Action::version on every F/B by replaying each rank's list: F reads the live version of its
// stage (count of STEP(stage) before it in the list); B reads the live version (stash = false:
// PACI, AMDP) or its forward's version (stash = true: PipeDream weight stashing).
void assign_live_versions(Schedule* s, bool stash);

}  // namespace pt::schedules_internal
