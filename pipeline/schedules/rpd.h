// Randomized PipeDream (RPD, algorithms.md §5.3): the stale block-SGD reference. Global update k
// (k = 0, 1, ... over the whole run) draws the active stage s and one read delay d_j per block j;
// the update forwards every block j at the iterate x^{k - d_j} (x^k = after k global updates),
// backs up from the loss to block s and updates block s only. The draws are a pure function of
// (seed, k) and the rules below, so a segment's list, a resumed run and a replay all see the same
// ones. Used by build_rpd (rpd.cc) and by the tests of the sampling laws.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "pipeline/schedules/schedules.h"

namespace pt {

struct RpdDraw {
  int stage = 0;            // s in [0, S)
  std::vector<int> delays;  // d_j per block j (size S), in [0, min(max_delay, k)]
};

// Draws of global updates first .. first + count - 1 for S stages. stage_sampling: uniform
// (s ~ U{0..S-1}) | cyclic (k mod S) | pipedream (the stage of PipeDream's k-th backward in time
// order, delay_law.h). delay_sampling: uniform (d_j ~ U{0..min(max_delay, k)}, independent per j) |
// deterministic (d_j = min(max(0, j - s), max_delay, k)) | pipedream (PipeDream's own delay of
// block j at its k-th update, capped at max_delay). Random draws: Philox keyed by seed, one counter
// per (k, draw); pipedream replays the unit-time (F = B = 1) simulation of `pipedream` lists.
Status rpd_draws(const ScheduleSpec& spec, int stages, int64_t first, int64_t count, std::vector<RpdDraw>* out);
// The draw of one update (rpd_draws of one; a pipedream rule simulates PipeDream up to k).
RpdDraw rpd_draw(const ScheduleSpec& spec, int stages, int64_t k);

// The delay update k = first_update + i of a segment actually reads: the history starts afresh at
// each drain point (the executor keeps snapshots within a list only), so d_j is cut to i.
inline int rpd_segment_delay(int drawn, int64_t index_in_segment) {
  return int(drawn < index_in_segment ? drawn : index_in_segment);
}

namespace schedules_internal {
// rpd's own rules: one micro-batch per update, the sampling names, max_delay >= 0, no PACI mode.
Status check_rpd(const ScheduleSpec& spec);
}  // namespace schedules_internal

}  // namespace pt
