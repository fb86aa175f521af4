// ZB-H1 (Qi et al., ICLR'24; algorithms.md §1.6). 1F1B's shape with the backward split into Bx
// (input gradient, on the critical path) and Bw (weight gradient, deferrable). Stage s = rank s:
//   1. warm-up: w = min(S-s-1, m) forwards, as 1F1B;
//   2. steady state: F(w+i), Bx(i), then Bw of the oldest micro-batch once more than s of them are
//   pending;
//   3. cool-down: Bx(i), then one pending Bw under the same rule;
//   4. the s+1 Bw passes still pending.
// Holding back s weight passes on stage s is what removes the cool-down bubble: the chain of Bx's
// runs from the last stage to stage 0 without waiting for W's, and each stage's held-back W's fill
// the gaps where it waits for the next output gradient. With F = Bx = Bw the simulated idle time is
// (S-1)(F+Bx-Bw) per rank for m >= S (tests/pipeline/schedules_test.cc). Keeps: Bx(i) before Bw(i);
// Bx and Bw each ascending in micro-batch; micro-batches holding activations (F done, Bw not) on
// stage s <= S-s + s = S, 1F1B's peak.
#include <algorithm>

#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_zb_h1(const ScheduleSpec& spec, Schedule* out) {
  const int m = spec.microbatches;
  auto fill = [&](std::vector<Action>& list, int r) {
    const int held_back = r;  // weight passes stage r keeps pending
    int next_bw = 0;          // oldest micro-batch whose Bw is pending
    auto backward = [&](int i) {
      list.push_back(compute(ActionKind::Bx, r, i));
      if (i + 1 - next_bw > held_back) list.push_back(compute(ActionKind::Bw, r, next_bw++));
    };
    schedules_internal::one_f_one_b_order(
        m, std::min(spec.ranks - r - 1, m), [&](int i) { list.push_back(compute(ActionKind::F, r, i)); }, backward);
    while (next_bw < m) list.push_back(compute(ActionKind::Bw, r, next_bw++));
  };
  return schedules_internal::one_stage_per_rank(spec, "zb_h1", size_t(3 * m), fill, out);
}

}  // namespace pt
