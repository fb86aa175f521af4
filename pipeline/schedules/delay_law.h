// PipeDream's global delay law (algorithms.md §5.2), measured on the schedule
// this project builds (make_schedule "pipedream", accumulation 1: an update of a block after
// every backward), executed by the simulator with §5.2's unit times F = B = 1.
//
// Global delay: all ops of the simulated timeline in (start time, stage) order; the k-th backward
// (k = updates before it in that order; micro-batch i on stage s) has, for every block j, the
// delay d_j = k - h(i, j), h(i, j) = updates before the forward of i on stage j in the same order.
// Max and mean over every (backward, block) pair of the steady state: the backwards of micro-batches
// N/2 <= i < N - 2S (the first half holds the warm-up, the last 2S feel the drain).
#pragma once

#include "common/status.h"

namespace pt {

struct GlobalDelayLaw {
  int stages = 0;
  int microbatches = 0;  // simulated segment: one update per micro-batch and stage
  int max_delay = 0;
  double mean_delay = 0;
  long pairs = 0;  // (backward, block) pairs in the steady state
};

// PipeDream with S >= 2 stages over `microbatches` (>= 6 S) micro-batches.
Status pipedream_global_delay(int stages, int microbatches, GlobalDelayLaw* out);

}  // namespace pt
