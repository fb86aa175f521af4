// Megatron-LM interleaved 1F1B (algorithms.md §1.3). Looping placement: chunk c of rank d is global
// stage c*N + d. Depth-first order over "virtual micro-batches" k in [0, m*v):
//   forward k : chunk (k / N) % v,          micro-batch (k / (N*v)) * N + k % N
//   backward k: chunk v-1 - (k / N) % v,    same micro-batch formula
// Rank d runs min(2(N-d-1) + (v-1)N, m*v) warm-up forwards, then F/B pairs, then the cool-down
// backwards. The micro-batch formula only enumerates every micro-batch when m % N == 0, Megatron's
// requirement, which we enforce. Keeps: per stage, forwards and backwards ascending in micro-batch.
#include <algorithm>
#include <string>

#include "common/check.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

Status schedules_internal::check_interleaved_1f1b(const ScheduleSpec& spec) {
  const int n = spec.ranks, m = spec.microbatches;
  if (m % n == 0) return Status::ok();
  return Status::error("training.microbatches = " + std::to_string(m) +
                       " must be a multiple of parallel.pp = " + std::to_string(n) +
                       " for schedule.kind 'interleaved_1f1b' (Megatron's depth-first order runs "
                       "micro-batches in groups of one per rank); use bfpp or a multiple of " +
                       std::to_string(n));
}

Status build_interleaved_1f1b(const ScheduleSpec& spec, Schedule* out) {
  const int n = spec.ranks;
  const int v = spec.chunks;
  const int m = spec.microbatches;
  PT_CHECK(m % n == 0);  // check_interleaved_1f1b
  Schedule s = schedules_internal::empty_schedule(spec, "interleaved_1f1b");
  const int total = m * v;
  auto mb_of = [&](int k) { return (k / (n * v)) * n + k % n; };
  auto forward = [&](int d, int k) {
    return compute(ActionKind::F, ((k / n) % v) * n + d, mb_of(k));
  };
  auto backward = [&](int d, int k) {
    return compute(ActionKind::B, (v - 1 - (k / n) % v) * n + d, mb_of(k));
  };
  for (int d = 0; d < n; ++d) {
    auto& list = schedules_internal::reserve_rank_list(s, d, size_t(2 * total), v);
    const int warmup = std::min(2 * (n - d - 1) + (v - 1) * n, total);
    for (int k = 0; k < warmup; ++k) list.push_back(forward(d, k));
    for (int k = 0; k + warmup < total; ++k) {
      list.push_back(forward(d, warmup + k));
      list.push_back(backward(d, k));
    }
    for (int k = total - warmup; k < total; ++k) list.push_back(backward(d, k));
  }
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
