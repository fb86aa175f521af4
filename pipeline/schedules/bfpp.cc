// Breadth-first pipeline parallelism (algorithms.md §6). Looping placement as interleaved (stage
// c*N + d on rank d). The m micro-batches form depth = m / breadth consecutive groups; each group
// is a full breadth-first fill and drain (Fast-LLM's breadth_first x depth_first micro-batches,
// §6.3). Per rank d and group:
//   for l in 0..v-1:   F(all micro-batches of the group, stage l*N + d)
//   for l in v-1..0:   B(all micro-batches of the group, stage l*N + d)   -- ascending (Fast-LLM),
//   not reversed
// Keeps: forwards non-decreasing in local stage, backwards non-increasing within a group (§6.6.2),
// and ascending micro-batch order per stage.
#include "common/check.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status build_bfpp(const ScheduleSpec& spec, Schedule* out) {
  const int n = spec.ranks;
  const int v = spec.chunks;
  const int m = spec.microbatches;
  const int breadth = spec.bfpp_breadth == 0 ? m : spec.bfpp_breadth;
  PT_CHECK(breadth >= 1 && m % breadth == 0);  // check_schedule_spec
  Schedule s = schedules_internal::empty_schedule(spec, "bfpp");
  for (int d = 0; d < n; ++d) {
    auto& list = schedules_internal::reserve_rank_list(s, d, size_t(2 * m * v), v);
    for (int g0 = 0; g0 < m; g0 += breadth) {
      for (int l = 0; l < v; ++l) {
        for (int i = g0; i < g0 + breadth; ++i)
          list.push_back(compute(ActionKind::F, l * n + d, i));
      }
      for (int l = v - 1; l >= 0; --l) {
        for (int i = g0; i < g0 + breadth; ++i)
          list.push_back(compute(ActionKind::B, l * n + d, i));
      }
    }
  }
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
