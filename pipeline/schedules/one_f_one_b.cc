// 1F1B / PipeDream-Flush (algorithms.md §1.2). Stage s = rank s runs w = min(S-s-1, m) warm-up
// forwards, then alternates F(w+i), B(i) until every forward is issued, then the w cool-down
// backwards. Keeps: in-flight activations on stage s never exceed S-s (w + 1), backwards ascending
// in micro-batch.
#include <algorithm>

#include "pipeline/prefault.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_one_f_one_b(const ScheduleSpec& spec, Schedule* out) {
  Schedule s = schedules_internal::empty_schedule(spec, "1f1b");
  const int num_stages = spec.ranks;
  const int m = spec.microbatches;
  for (int r = 0; r < num_stages; ++r) {
    auto& list = s.per_rank[r];
    list.reserve(size_t(2 * m) + schedules_internal::step_actions(1));
    prefault(list.data(), list.capacity() * sizeof(Action));
    const int warmup = std::min(num_stages - r - 1, m);
    // 1. Warm-up: fill the pipeline below this stage.
    for (int i = 0; i < warmup; ++i) list.push_back(compute(ActionKind::F, r, i));
    // 2. Steady state: one forward, then the oldest outstanding backward.
    for (int i = 0; i + warmup < m; ++i) {
      list.push_back(compute(ActionKind::F, r, warmup + i));
      list.push_back(compute(ActionKind::B, r, i));
    }
    // 3. Cool-down: drain the remaining backwards.
    for (int i = m - warmup; i < m; ++i) list.push_back(compute(ActionKind::B, r, i));
  }
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
