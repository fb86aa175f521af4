// Time accounting of a training run: where each rank's time goes (measured), the
// simulated time of the schedule actually run (sim_time), and time to target losses.
//
//   RankTimes     one rank's seconds per category over a segment (or a whole run), from
//                 the executor's ActionSpans (pipeline/trace.h):
//                   forward_s          F
//                   backward_s         full B (input and weight gradient together)
//                   backward_input_s   Bx (split backward)
//                   backward_weight_s  Bw (split backward)
//                   wait_s             blocked in RECV_ACT/RECV_GRAD (waiting for the peer plus
//                                      the transfer, which the transport does not separate) and
//                                      in the closing wait for send completion
//                   send_s             posting SEND_ACT/SEND_GRAD (copy out, non-blocking send)
//                   reduce_s           ALLREDUCE_GRAD (data-parallel and AMDP replica sums); with
//                                      bucketed data-parallel sums started during the backward
//                                      (pipeline/grad_buckets.h) only the exposed rest: the wait
//                                      for buckets still in flight (starting one is in the
//                                      backward's span, MPI progress on it in the rank's other
//                                      MPI waits, mostly wait_s)
//                   step_s             STEP (gradient norm incl. its all-reduce, clip, optimizer)
//                   other_s            wall_s minus all of the above (executor and runner
//                                      bookkeeping, the segment's loss/norm reductions)
//                   wall_s             the segment's wall time on this rank
//                   eval_s, checkpoint_s  between segments (run totals only)
//                   accounting_s       the trainer's own accounting after each segment: splitting
//                                      the spans, gathering the split, keeping trace spans (run totals)
//                 measured bubble = 1 - (forward + backward + backward_input + backward_weight) / wall.
//                 On CUDA the compute categories are device time (the executor's timed
//                 events around each compute action, ActionSpan::device), not the host's
//                 issue time; the other categories count host time the device was not
//                 computing (split_spans).
//   SimClock      sim_time: the makespan (pipeline/simulate.h) of each lowered list that ran,
//                 summed over segments, under unit costs (F = 1, Bx = Bw = 1, so B = 2, for a
//                 rank's share of one pipeline chain: 1/v each for v chain stages per rank) or the
//                 cost file of training.sim_costs (seconds). Also the bubble the plan predicts.
//   StageCosts    per-stage sums and counts of measured F/B/Bx/Bw, the calibrated CostModel
//                 for "planned bubble at the measured costs".
//   target_crossings  first val_loss <= target rows of metrics.jsonl.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "app/config.h"
#include "common/status.h"
#include "pipeline/simulate.h"
#include "pipeline/trace.h"

namespace pt {

enum TimeKind : int {
  kTimeForward, kTimeBackward, kTimeBackwardInput, kTimeBackwardWeight, kTimeWait, kTimeSend, kTimeReduce,
  kTimeStep, kTimeOther, kTimeWall, kTimeEval, kTimeCheckpoint, kTimeAccounting, kNumTimeKinds
};
const char* time_kind_name(int k);  // "forward_s", ...

struct RankTimes {
  std::array<double, kNumTimeKinds> s{};
  double busy() const { return s[kTimeForward] + s[kTimeBackward] + s[kTimeBackwardInput] + s[kTimeBackwardWeight]; }
  double bubble() const { return s[kTimeWall] > 0 ? 1.0 - busy() / s[kTimeWall] : 0.0; }
  void add(const RankTimes& o) {
    for (int k = 0; k < kNumTimeKinds; ++k) s[size_t(k)] += o.s[size_t(k)];
  }
};

// Sums `spans` by category; other_s = wall - the categorized sum. A partition of wall:
// device spans (ActionSpan::device, compute actions of a CUDA stage) count as the time the
// device ran them, overlapping device spans once; every other span counts only where no
// device span covers it (a host waiting for the device's compute, e.g. a send's copy out
// waiting for the producer, is compute time, not send time).
RankTimes split_spans(const std::vector<ActionSpan>& spans, double wall);

// {"forward_s":[per world rank], ..., "bubble":[per world rank], "planned_bubble":[per pipeline rank]}
// (kinds with a zero total on every rank, such as eval_s inside a step, are left out).
std::string time_split_json(const std::vector<RankTimes>& per_rank, const std::vector<double>& planned_bubble);

// JSON array of numbers with 6 significant digits: "[0.25,1.5]".
std::string number_array(const std::vector<double>& v);

// Simulated time of each list that runs. Lists are identified by address (the trainer keeps
// them for the whole run), each simulated once.
class SimClock {
 public:
  // Unit costs, or training.sim_costs (checked against the model shape) for `lowered`'s stages
  // whose blocks are `ranges` (per model stage).
  Status init(const Config& c, const Schedule& lowered, const std::vector<std::pair<int, int>>& ranges);
  struct Segment {
    double makespan = 0;
    std::vector<double> update_end;      // per update: when its last loss is ready (async), or makespan (sync)
    std::vector<double> planned_bubble;  // per pipeline rank: idle / makespan
  };
  const Segment& segment(const Schedule& lowered, bool asynchronous, int m);
  // Drops the cached result of `lowered` (before that list is freed).
  void forget(const Schedule& lowered) { cache_.erase(&lowered); }
  std::string unit() const { return unit_; }  // "unit" or "s"
  const CostModel& costs() const { return costs_; }  // per stage of the list given to init

 private:
  CostModel costs_;
  const char* unit_ = "unit";
  std::map<const Schedule*, Segment> cache_;
};

// Sums of measured compute per (stage, kind in F/B/Bx/Bw) and their counts.
struct StageCosts {
  std::vector<double> sum, count;  // [stage * 4 + kind]
  void add(const std::vector<ActionSpan>& spans, int num_stages);
  // Mean measured costs as a CostModel (B split evenly into Bx and Bw where no split ran;
  // communication, STEP and reductions free). False when some stage has no measurement.
  bool cost_model(int num_stages, CostModel* out) const;
};

// First metrics row with val_loss <= target, per target, from a metrics.jsonl file.
struct TargetCrossing {
  double target = 0;
  bool reached = false;
  int64_t step = 0, tokens = 0;
  double time_s = 0, sim_time = 0, val_loss = 0;
};
std::vector<TargetCrossing> target_crossings(const std::string& metrics_path, const std::vector<double>& targets);
std::string target_crossings_json(const std::vector<TargetCrossing>& t);

// The number after "key": in a one-line JSON object (top level keys are unique there); false if absent.
bool json_number(const std::string& line, const std::string& key, double* out);

}  // namespace pt
