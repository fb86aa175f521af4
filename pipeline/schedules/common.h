// Helpers shared by the schedule builders: the empty Schedule shell with its placement, the action
// constructor, and the per-kind spec checks the registry entries reference (user-facing Status
// messages that start with the config key to change; the one copy of each rule).
#pragma once

#include <utility>
#include <vector>

#include "pipeline/schedules/schedules.h"

namespace pt::schedules_internal {

// A Schedule with no actions yet: num_ranks, num_stages = ranks * chunks, looping placement, empty
// lists.
Schedule empty_schedule(const ScheduleSpec& spec, const char* name);

// The kinds' own rules (after the common ones of check_schedule_spec).
Status check_interleaved_1f1b(const ScheduleSpec& spec);  // m % pp == 0
Status check_pipedream_2bw(const ScheduleSpec& spec);     // m >= pp
Status check_paci(const ScheduleSpec& spec);              // allowed_lagging: S values in [1, S-s]
Status check_amdp(const ScheduleSpec& spec);  // even pp >= 2, m % pp, step_slot reference rules
Status check_localsgd(const ScheduleSpec& spec);  // copies, local_steps ranges; m % copies

// Actions make_schedule appends to a synchronous rank list of `stages` stages (ALLREDUCE_GRAD and
// STEP per stage): builders reserve them so the append does not copy the list.
inline size_t step_actions(int stages) { return 2 * size_t(stages); }

// Rank r's list, with room for `compute_actions` plus the step of its `stages` stages,
// pre-faulted (pipeline/prefault.h: the pages of a 25M-action plan are touched in parallel).
std::vector<Action>& reserve_rank_list(Schedule& s, int r, size_t compute_actions, int stages);

// A schedule with one stage per rank whose lists `fill(list, rank)` writes, with `per_rank`
// compute actions reserved per rank (gpipe, 1f1b, zb_h1).
template <class Fill>
Status one_stage_per_rank(const ScheduleSpec& spec, const char* name, size_t per_rank, Fill fill, Schedule* out) {
  Schedule s = empty_schedule(spec, name);
  for (int r = 0; r < spec.ranks; ++r) fill(reserve_rank_list(s, r, per_rank, 1), r);
  *out = std::move(s);
  return Status::ok();
}

// The 1F1B order of one rank (algorithms.md §1.2): `warmup` forwards, then forward(warmup + i),
// backward(i) pairs until every forward is issued, then the remaining backwards. ZB-H1 passes a
// backward that also places the deferred weight passes.
template <class Forward, class Backward>
void one_f_one_b_order(int m, int warmup, Forward forward, Backward backward) {
  for (int i = 0; i < warmup; ++i) forward(i);
  for (int i = 0; i + warmup < m; ++i) {
    forward(warmup + i);
    backward(i);
  }
  for (int i = m - warmup; i < m; ++i) backward(i);
}

inline Action compute(ActionKind kind, int stage, int microbatch) {
  Action a;
  a.kind = kind;
  a.stage = stage;
  a.microbatch = microbatch;
  return a;
}

}  // namespace pt::schedules_internal
