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

#include <cstdint>
#include <vector>

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

// PipeDream's first `updates` global updates in that order (rpd's `pipedream` sampling): the stage
// of each backward and the delay d_j = k - h(i, j) of every block j. The simulated segment is
// long enough that its drain comes after them, so this is a prefix of an endless run's order.
struct PipeDreamUpdate {
  int microbatch = 0;  // i: the backward's micro-batch
  int stage = 0;
  std::vector<int> delays;  // per block
};
Status pipedream_update_order(int stages, int64_t updates, std::vector<PipeDreamUpdate>* out);

}  // namespace pt
