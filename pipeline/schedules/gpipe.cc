// GPipe (algorithms.md §1.1): on every rank all m forwards of its stage, then all m backwards, both
// in ascending micro-batch order. Keeps: in-flight activations on a stage reach m at the F/B
// turnaround.
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_gpipe(const ScheduleSpec& spec, Schedule* out) {
  const int m = spec.microbatches;
  auto fill = [m](std::vector<Action>& list, int r) {
    for (int i = 0; i < m; ++i) list.push_back(compute(ActionKind::F, r, i));
    for (int i = 0; i < m; ++i) list.push_back(compute(ActionKind::B, r, i));
  };
  return schedules_internal::one_stage_per_rank(spec, "gpipe", size_t(2 * m), fill, out);
}

}  // namespace pt
