// ActionSpan: the measured wall-clock interval of one executed action on its rank, the
// unit of time accounting (app/time_accounting.h) and of the merged run trace. The
// executor records one per action of its list, plus one for the closing wait on sends.
#pragma once

#include <cstdint>

#include "pipeline/action.h"

namespace pt {

// ActionSpan::kind of the wait for outstanding sends at the end of a list (not an ActionKind).
constexpr uint8_t kSpanWaitSends = 0xFE;

struct ActionSpan {
  double start = 0;        // seconds after the executor's run_step began
  double end = 0;
  int32_t stage = -1;      // the action's (local) stage; -1 for kSpanWaitSends
  int32_t microbatch = -1; // within the list; -1 for STEP/ALLREDUCE_GRAD/kSpanWaitSends
  uint8_t kind = 0;        // uint8_t(ActionKind) or kSpanWaitSends
  uint8_t group = 0;       // ALLREDUCE_GRAD's CollectiveGroup bits
  uint8_t device = 0;      // 1: a compute action of a device stage; [start, end] is when the
                           // device ran it (StageModel::timing_mark), not when the host issued it
  uint8_t pad[5] = {};     // trivially copyable, no indeterminate bytes (gathered between ranks)
};

}  // namespace pt
