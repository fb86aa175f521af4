// RPD (rpd.h) as a pure generator of one drained segment of N = segment_updates global updates
// (m = 1: micro-batch i of the segment is global update first_update + i). Stage j lives on rank j.
// For update i with draw (s, d): every stage j runs F(j, i) at the stage-local version its block
// had after global update first_update + i - d'_j (d'_j = rpd_segment_delay), stages j > s run
// Bx(j, i) at the same version (input gradient only), stage s runs B(s, i) and STEP(s); stages
// j < s run the forward only. Versions are stage-local (STEPs of that stage since the segment
// start), as the executor counts them; a block not chosen in between keeps its version, so the
// read equals x_j^{k - d_j} exactly. The snapshots a list needs are the versions still read by
// a later action: at most min(max_delay, N) + 1 per stage (executor.h).
#include "pipeline/schedules/rpd.h"

#include <algorithm>

#include "common/check.h"
#include "common/rng.h"
#include "pipeline/schedules/delay_law.h"
#include "pipeline/schedules/common.h"

namespace pt {

namespace {

constexpr uint64_t kRpdStream = 0x5250440000000000ull;  // "RPD": stage draw; + 1 + j: block j's delay

// Uniform integer in [0, n) from 64 random bits (bias < n / 2^64).
int uniform_below(uint64_t seed, uint64_t stream, int64_t k, int n) {
  uint32_t r[4];
  Philox4x32::generate(seed, stream, uint64_t(k), r);
  const uint64_t bits = (uint64_t(r[1]) << 32) | r[0];
  return int(bits % uint64_t(n));
}

// Update k's draw; `pd` = PipeDream's k-th update when a rule replays it.
RpdDraw draw_of(const ScheduleSpec& spec, int stages, int64_t k, const PipeDreamUpdate* pd) {
  RpdDraw d;
  const std::string& rs = spec.rpd_stage_sampling;
  d.stage = rs == "cyclic" ? int(k % stages) : rs == "pipedream" ? pd->stage : uniform_below(spec.seed, kRpdStream, k, stages);
  const int cap = int(std::min<int64_t>(spec.rpd_max_delay, k));
  const std::string& rd = spec.rpd_delay_sampling;
  d.delays.resize(size_t(stages));
  for (int j = 0; j < stages; ++j)
    d.delays[size_t(j)] = rd == "deterministic" ? std::min(std::max(0, j - d.stage), cap)
                          : rd == "pipedream"   ? std::min(pd->delays[size_t(j)], cap)
                                                : uniform_below(spec.seed, kRpdStream + 1 + uint64_t(j), k, cap + 1);
  return d;
}

}  // namespace

Status rpd_draws(const ScheduleSpec& spec, int stages, int64_t first, int64_t count, std::vector<RpdDraw>* out) {
  std::vector<PipeDreamUpdate> pd;
  if (spec.rpd_stage_sampling == "pipedream" || spec.rpd_delay_sampling == "pipedream")
    PT_RETURN_IF_ERROR(pipedream_update_order(stages, first + count, &pd));
  out->clear();
  for (int64_t k = first; k < first + count; ++k)
    out->push_back(draw_of(spec, stages, k, pd.empty() ? nullptr : &pd[size_t(k)]));
  return Status::ok();
}

RpdDraw rpd_draw(const ScheduleSpec& spec, int stages, int64_t k) {
  std::vector<RpdDraw> d;
  const Status st = rpd_draws(spec, stages, k, 1, &d);
  PT_CHECK_MSG(st.is_ok(), st.message());
  return d[0];
}

namespace schedules_internal {

Status check_rpd(const ScheduleSpec& spec) {
  if (spec.microbatches != 1)
    return Status::error("training.microbatches = " + std::to_string(spec.microbatches) +
                         " but schedule.kind 'rpd' takes one micro-batch per global update (no accumulation); set "
                         "training.microbatches: 1");
  if (spec.rpd_max_delay < 0)
    return Status::error("schedule.rpd.max_delay must be >= 0, got " + std::to_string(spec.rpd_max_delay));
  const std::string& rs = spec.rpd_stage_sampling;
  if (rs != "uniform" && rs != "cyclic" && rs != "pipedream")
    return Status::error("schedule.rpd.stage_sampling = '" + rs + "' is not one of: uniform, cyclic, pipedream");
  const std::string& rd = spec.rpd_delay_sampling;
  if (rd != "uniform" && rd != "deterministic" && rd != "pipedream")
    return Status::error("schedule.rpd.delay_sampling = '" + rd + "' is not one of: uniform, deterministic, pipedream");
  if (spec.paci_mode != "perf")
    return Status::error("schedule.paci.mode applies to schedule.kind: paci and paci_flush only; leave it perf with rpd");
  return Status::ok();
}

}  // namespace schedules_internal

Status build_rpd(const ScheduleSpec& spec, Schedule* out) {
  using schedules_internal::compute;
  const int S = spec.ranks, N = spec.segment_updates;
  Schedule sched = schedules_internal::empty_schedule(spec, "rpd");
  sched.microbatches = N;
  sched.partial_backward = true;
  // version[j][i]: STEPs of stage j among the segment's first i updates.
  std::vector<std::vector<int>> version(size_t(S), std::vector<int>(size_t(N) + 1, 0));
  std::vector<RpdDraw> draws;
  PT_RETURN_IF_ERROR(rpd_draws(spec, S, spec.first_update, N, &draws));
  for (int i = 0; i < N; ++i) {
    const RpdDraw& d = draws[size_t(i)];
    for (int j = 0; j < S; ++j) {
      const int v = version[size_t(j)][size_t(i - rpd_segment_delay(d.delays[size_t(j)], i))];
      auto& list = sched.per_rank[size_t(j)];
      list.push_back(compute(ActionKind::F, j, i));
      list.back().version = v;
      if (j >= d.stage) {
        list.push_back(compute(j == d.stage ? ActionKind::B : ActionKind::Bx, j, i));
        list.back().version = v;
      }
      if (j == d.stage) list.push_back(compute(ActionKind::STEP, j, -1));
      version[size_t(j)][size_t(i) + 1] = version[size_t(j)][size_t(i)] + (j == d.stage);
    }
  }
  *out = std::move(sched);
  return Status::ok();
}

}  // namespace pt
