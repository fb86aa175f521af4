// SegmentRunner: runs one DRAINED SEGMENT of any schedule: `updates` optimizer updates of m
// micro-batches each, from a lowered list whose ALLREDUCE_GRAD and STEP actions carry the
// reductions and the updates (a synchronous schedule is a segment of one update whose
// list ends in ALLREDUCE_GRAD(data) + STEP per stage). The runner turns those actions into
// calls:
//   ALLREDUCE_GRAD(s, replicas)  StageReplicas::reduce (AMDP)
//   AVERAGE(s)                   average_copies of the rank's copies of model stage s (localsgd,
//                                app/model_copies.h); the segment then ends with them identical
//   ALLREDUCE_GRAD(s, data)      sum over data-parallel replicas, then, once every local
//                                holder of wte is reduced, the tied-embedding sum
//   STEP(s)                      clip and update: with the global clip (synchronous
//                                schedules) the norm over all stages is taken once per
//                                update at this rank's first STEP; otherwise the stage clips
//                                by its own norm and takes the learning rate of its version
// and afterwards reduces losses, norms and version records into one log line per update.
// A non-finite gradient norm never reaches the parameters: that update is left out on the
// stages it covers (global clip: every stage; per-stage clip: that stage), the version still
// advances, and the segment reports it (training.on_nonfinite decides what the run does).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "app/config.h"
#include "app/stage_replicas.h"
#include "app/step_reductions.h"
#include "app/train_state.h"
#include "data/loader.h"
#include "pipeline/action.h"
#include "pipeline/collectives.h"
#include "pipeline/executor.h"
#include "pipeline/grad_buckets.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/transport.h"

namespace pt {

// One optimizer update as logged (valid on every rank).
struct UpdateLog {
  int64_t step = 0;       // 1-based
  double loss = 0;        // mean over the update's m·dp micro-batches
  double time_s = 0;      // run clock: async, when its last loss's forward returned (StepOutput::loss_times); sync, segment end
  double lr = 0;
  double grad_norm = 0;   // sync: the global norm; async: sqrt of the summed per-stage squares
  std::string versions;   // async: JSON per-stage drift/delay; "" for sync
  bool skipped = false;   // some stage's update was left out: a non-finite gradient norm
};

// A non-finite value seen in a segment: the gradient norm of `stage` (or, stage -1, the loss)
// of update `step` (1-based, as logged).
struct NonFinite {
  int64_t step = 0;
  int stage = -1;
  int pp_rank = -1;
};

// A version record with run-global ids: microbatch = step·m + index, versions counted
// from the start of the run (per stage); backward / applied -1: none (forward only, not applied).
struct RunVersionRecord {
  int64_t microbatch = 0;
  int stage = 0;
  int64_t forward = 0, backward = 0, applied = 0;
};

struct SegmentResult {
  std::vector<UpdateLog> updates;
  std::vector<RunVersionRecord> records;  // async only, dp replica 0's
  std::vector<NonFinite> nonfinite;       // every rank's, in (step, stage) order; empty when all finite
  int peak_slots = 0;                     // most activation slots held at once on this rank
  // Floats this rank's stages moved between host and backend memory while the schedule ran
  // (StageModel::transfers; the drain check of stage replicas after it not included): 0 where
  // the step is device-resident and its collectives take the stages' memory.
  int64_t transfer_floats = 0;
  double seconds = 0;                     // wall time of the segment
  // run.time_accounting: this rank's measured actions (pipeline/trace.h), times after `started`.
  std::vector<ActionSpan> spans;
  std::chrono::steady_clock::time_point started;
};

class SegmentRunner {
 public:
  // `traits`: the schedule's registry entry (clip policy, version records, stage replicas).
  SegmentRunner(const Config& c, Collectives& coll, const Schedule& placement, int pp_rank,
                const ScheduleTraits& traits, std::string run_dir);

  // Runs steps [first_step, first_step + updates of `lowered`). `clock_offset` = run seconds
  // elapsed at the segment start.
  SegmentResult run(const Schedule& lowered, int64_t first_step, double clock_offset, TrainState* state,
                    const DataLoader& data, Transport* transport);

  const StageReplicas& replicas() const { return replicas_; }

  // The executor of `lowered` over this rank's stages, made at its first use and kept, so its
  // boundary buffers and slots are reused by every segment that runs the same list (and by
  // evaluation, which runs the placement list). `lowered` must outlive the runner.
  Executor& executor_for(const Schedule& lowered, const TrainState& state, Transport* transport);
  // Drops the executor of `lowered` (before that list is freed: a list of one segment only).
  void forget(const Schedule& lowered) { executors_.erase(&lowered); }

 private:
  struct Pending;  // per-segment bookkeeping of the callbacks
  void reduce_data(LocalStage& ls, Pending& p, std::vector<LocalStage>& local);
  // The stage's bucketed data-parallel all-reduce (pipeline/grad_buckets.h), or nullptr where
  // reduce_data sums nothing for it (dp = 1, a non-owner in AMDP owner mode).
  BucketedAllReduce* dp_buckets(LocalStage& ls);
  void set_grads_ready_hooks(std::vector<LocalStage>& local, bool on);
  void report_dp_buckets(std::vector<LocalStage>& local);
  void step(LocalStage& ls, Pending& p, std::vector<LocalStage>& local);
  void global_norm_of_update(int k, Pending& p, std::vector<LocalStage>& local);
  void gather_nonfinite(const Pending& p, SegmentResult* result);
  void mark_dropped_backwards(const Schedule& lowered, const std::vector<LocalStage>& local,
                              std::vector<VersionRecord>* versions) const;
  void fill_logs(const Schedule& lowered, int64_t first_step, double clock_offset, const Pending& p,
                 const StepOutput& out, SegmentResult* result);

  const Config& c_;
  Collectives& coll_;
  int pp_rank_, chain_;
  const ScheduleTraits& traits_;
  std::string run_dir_;
  StageReplicas replicas_;
  TiedEmbeddings tied_;
  std::map<const Schedule*, std::unique_ptr<Executor>> executors_;
  std::map<int, std::unique_ptr<BucketedAllReduce>> dp_buckets_;  // per local stage
  std::set<int> dp_buckets_reported_;                              // stages whose plan was logged
};

// Sum of StageModel::transfers().total() over the rank's stages.
int64_t transfer_floats(const TrainState& state);

// JSON line for versions.jsonl.
std::string version_record_json(const RunVersionRecord& r);

}  // namespace pt
