// 1F1B / PipeDream-Flush (algorithms.md §1.2). Stage s = rank s runs w = min(S-s-1, m) warm-up
// forwards, then alternates F(w+i), B(i) until every forward is issued, then the w cool-down
// backwards. Keeps: in-flight activations on stage s never exceed S-s (w + 1), backwards ascending
// in micro-batch.
#include <algorithm>

#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_one_f_one_b(const ScheduleSpec& spec, Schedule* out) {
  const int m = spec.microbatches;
  auto fill = [&](std::vector<Action>& list, int r) {
    // Warm-up fills the pipeline below this stage; the steady state runs one forward, then the
    // oldest outstanding backward; the cool-down drains the rest.
    schedules_internal::one_f_one_b_order(
        m, std::min(spec.ranks - r - 1, m), [&](int i) { list.push_back(compute(ActionKind::F, r, i)); },
        [&](int i) { list.push_back(compute(ActionKind::B, r, i)); });
  };
  return schedules_internal::one_stage_per_rank(spec, "1f1b", size_t(2 * m), fill, out);
}

}  // namespace pt
