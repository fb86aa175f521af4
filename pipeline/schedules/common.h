// Helpers shared by the schedule builders: the empty Schedule shell with its placement, the action
// constructor, and the per-kind spec checks the registry entries reference (user-facing Status
// messages that start with the config key to change; the one copy of each rule).
#pragma once

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

// Actions make_schedule appends to a synchronous rank list of `stages` stages (ALLREDUCE_GRAD and
// STEP per stage): builders reserve them so the append does not copy the list.
inline size_t step_actions(int stages) { return 2 * size_t(stages); }

inline Action compute(ActionKind kind, int stage, int microbatch) {
  Action a;
  a.kind = kind;
  a.stage = stage;
  a.microbatch = microbatch;
  return a;
}

}  // namespace pt::schedules_internal
