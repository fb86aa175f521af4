// PipeDream-2BW (algorithms.md §1.5) as a pure generator of one drained segment: PipeDream's order
// (pipedream.cc) with m >= S micro-batches per update and STEP(s) after every m-th backward. Every
// F and B of a micro-batch of update t reads version max(0, t-1) on every stage, so the update
// W(t+1) = W(t) - eta grad f(W(t-1)) has delay exactly 1 after the first update. Double buffering:
// with at most S <= m micro-batches in flight, the live version at any F/B of update t is t-1 or t,
// so at most 2 versions are ever alive (checked here with versions.h before returning).
#include <string>

#include "common/check.h"
#include "pipeline/schedules/async_common.h"
#include "pipeline/schedules/common.h"
#include "pipeline/versions.h"

namespace pt {

namespace schedules_internal {
Schedule pipedream_order(const ScheduleSpec& spec, const char* name);

Status check_pipedream_2bw(const ScheduleSpec& spec) {
  if (spec.microbatches >= spec.ranks) return Status::ok();
  return Status::error("training.microbatches = " + std::to_string(spec.microbatches) +
                       " is too small for schedule.kind 'pipedream_2bw': it accumulates m >= S = "
                       "parallel.pp = " + std::to_string(spec.ranks) +
                       " micro-batches per update so that at most 2 weight versions are alive "
                       "(double buffering)");
}
}  // namespace schedules_internal

Status build_pipedream_2bw(const ScheduleSpec& spec, Schedule* out) {
  const int m = spec.microbatches;
  PT_CHECK(m >= spec.ranks);  // check_pipedream_2bw
  Schedule s = schedules_internal::pipedream_order(spec, "pipedream_2bw");
  for (auto& list : s.per_rank) {
    for (Action& a : list) {
      if (a.kind == ActionKind::F || a.kind == ActionKind::B) {
        const int t = a.microbatch / m;
        a.version = t > 0 ? t - 1 : 0;
      }
    }
  }
  // Defensive: the argument above (in-flight <= S <= m) is what makes the versions exist.
  PT_RETURN_IF_ERROR(check_version_reads(s));
  const std::vector<int> peaks = peak_live_versions(s);
  for (int st = 0; st < s.num_stages; ++st) {
    const int peak = peaks[size_t(st)];
    if (peak > 2) {
      return Status::error("pipedream_2bw: stage " + std::to_string(st) + " would need " +
                           std::to_string(peak) + " weight versions alive (double buffering allows 2)");
    }
  }
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
