// GPipe (algorithms.md §1.1): on every rank all m forwards of its stage, then all m backwards, both
// in ascending micro-batch order. Keeps: in-flight activations on a stage reach m at the F/B
// turnaround.
#include "pipeline/prefault.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_gpipe(const ScheduleSpec& spec, Schedule* out) {
  Schedule s = schedules_internal::empty_schedule(spec, "gpipe");
  const int m = spec.microbatches;
  for (int r = 0; r < spec.ranks; ++r) {
    auto& list = s.per_rank[r];
    list.reserve(size_t(2 * m) + schedules_internal::step_actions(1));
    prefault(list.data(), list.capacity() * sizeof(Action));
    for (int i = 0; i < m; ++i) list.push_back(compute(ActionKind::F, r, i));
    for (int i = 0; i < m; ++i) list.push_back(compute(ActionKind::B, r, i));
  }
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
