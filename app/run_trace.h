// RunTrace: the merged trace of MEASURED action spans of every rank, written as Chrome /
// Perfetto trace-event JSON (run_dir/trace.json, run.trace_steps). One process per world
// rank (pid = world rank, named "rank R (pp P, dp D)"), one complete ("X") event per
// action, evaluation and checkpoint, and a flow arrow ("s" at the send, "f" at the end of
// the matching receive) per stage-boundary message. Flow ids are unique per (dp replica,
// run-global micro-batch, sending stage, activation | gradient), so a SEND_ACT of stage s
// matches the RECV_ACT of stage s+1 and a SEND_GRAD of stage s the RECV_GRAD of stage s-1.
// Clocks: every rank's times count from its own origin, taken right after a world
// barrier at the start of training, so ranks are aligned to the barrier's exit skew.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/collectives.h"
#include "pipeline/trace.h"

namespace pt {

constexpr uint8_t kSpanEval = 0xF0;        // TraceSpan::kind of an evaluation
constexpr uint8_t kSpanCheckpoint = 0xF1;  // TraceSpan::kind of a checkpoint write

struct TraceSpan {
  double start = 0, end = 0;  // seconds after this rank's aligned origin
  int64_t first_step = 0;     // the segment's first step (0-based): micro-batch ids are first_step·m + microbatch
  int32_t stage = -1, microbatch = -1;
  int32_t world_rank = 0;
  uint8_t kind = 0;           // ActionKind, kSpanWaitSends, kSpanEval or kSpanCheckpoint
  uint8_t device = 0;         // ActionSpan::device: when the GPU ran the action, not when it was issued
  uint8_t pad[2] = {};
};

class RunTrace {
 public:
  RunTrace(int world_rank, int pp, int microbatches) : world_rank_(world_rank), pp_(pp), m_(microbatches) {}
  // A segment's spans; `offset` = seconds from the origin to the executor's start.
  void add_segment(const std::vector<ActionSpan>& spans, double offset, int64_t first_step);
  void add(uint8_t kind, double start, double end, int64_t step);
  // Collective over kWorld: every rank's spans, the JSON text on world rank 0 ("" elsewhere).
  std::string gather_json(Collectives& coll) const;

 private:
  int world_rank_, pp_, m_;
  std::vector<TraceSpan> spans_;
};

// The trace-event JSON of spans from ranks 0..world-1 (pp pipeline ranks per replica).
std::string trace_json(const std::vector<TraceSpan>& spans, int world, int pp, int microbatches);

}  // namespace pt
