// Helpers shared by the schedule builders: argument checks that produce the user-facing Status
// messages (naming the YAML key and the rule), and the empty Schedule shell with its placement.
#pragma once

#include "pipeline/schedules/schedules.h"

namespace pt::schedules_internal {

// Checks ranks >= 1, microbatches >= 1, chunks >= 1 (and chunks == 1 unless allow_chunks).
Status check_basic(const ScheduleSpec& spec, bool allow_chunks);

// A Schedule with no actions yet: num_ranks, num_stages = ranks * chunks, looping placement, empty
// lists.
Schedule empty_schedule(const ScheduleSpec& spec, const char* name);

inline Action compute(ActionKind kind, int stage, int microbatch) {
  Action a;
  a.kind = kind;
  a.stage = stage;
  a.microbatch = microbatch;
  return a;
}

}  // namespace pt::schedules_internal
