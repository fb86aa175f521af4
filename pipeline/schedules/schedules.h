// Pure schedule builders: each maps a ScheduleSpec to a Schedule of compute actions (F, B, Bx, Bw)
// for ONE optimizer step; lower.h adds the communication. No MPI, no model, no clock: the same spec
// always gives the same lists. Invariants every builder keeps (asserted in
// tests/pipeline/schedules_test.cc):
//   * each (stage, micro-batch) has exactly one F and one B (or one Bx and one Bw) on
//   stage_to_rank[stage];
//   * on every stage the backwards (B or Bx, and Bw) run in ascending micro-batch order, so
//   gradient
//     accumulation adds micro-batches in the same order as the single-rank run (bitwise-equal
//     gradients);
//   * forwards on a stage run in ascending micro-batch order.
#pragma once

#include <string>

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

struct ScheduleSpec {
  std::string kind;  // gpipe | 1f1b | interleaved_1f1b | bfpp | zb_h1   (YAML: schedule.kind)
  int ranks = 1;     // N_PP, pipeline ranks                            (YAML: parallel.pp)
  int chunks = 1;    // v, model chunks per rank (interleaved_1f1b, bfpp) (YAML: schedule.chunks)
  int microbatches =
      1;  // m per optimizer step                            (YAML: schedule.microbatches)
  int bfpp_breadth = 0;  // bfpp: micro-batches per breadth-first group; 0 = m (pure breadth-first)
};

// The schedule kinds make_schedule knows, in the order of the docs.
const char* const* schedule_kinds(int* count);

// Dispatches on spec.kind; errors name the YAML key and the rule that failed.
Status make_schedule(const ScheduleSpec& spec, Schedule* out);

// GPipe (algorithms.md §1.1): all m forwards, then all m backwards, both ascending. One stage per
// rank.
Status build_gpipe(const ScheduleSpec& spec, Schedule* out);
// 1F1B / PipeDream-Flush (§1.2): min(S-s-1, m) warm-up forwards, then F/B pairs, then the cool-down
// B's.
Status build_one_f_one_b(const ScheduleSpec& spec, Schedule* out);
// Megatron interleaved 1F1B (§1.3): looping placement, depth-first order; needs m % ranks == 0.
Status build_interleaved_1f1b(const ScheduleSpec& spec, Schedule* out);
// BFPP (§6): looping placement, breadth-first order; breadth x depth hybrid of §6.3.
Status build_bfpp(const ScheduleSpec& spec, Schedule* out);
// ZB-H1 (§1.6): 1F1B shape with the backward split into Bx and Bw; rank s holds back s
// weight-gradient passes.
Status build_zb_h1(const ScheduleSpec& spec, Schedule* out);

}  // namespace pt
