// Asynchronous schedules (pipedream, pipedream_2bw, paci, paci_flush, amdp) run as
// drained SEGMENTS: between two drain points (evaluation, checkpoint, end) one
// action list per rank covers `updates` optimizer updates of m micro-batches
// each, with STEP actions where each stage updates itself (no flush, no global
// barrier inside a segment; AMDP's replicas meet in ALLREDUCE_GRAD). A run that
// drains at the same points computes the same thing whether or not it also
// evaluates or checkpoints there.
//
// Per stage, a STEP clips the stage's own gradient norm (a global clip would need a
// collective inside the pipeline, which these schedules avoid), takes the learning
// rate of the stage's version, and applies AdamW (optimizer_step.h).
//
// AMDP replicas (algorithms.md §2.2 "Stage ownership", §2.4 items 4 and 5): a model
// stage's K replicas live on the K ranks of one replica group. With
// schedule.amdp.zero_owner (default) model stage s is OWNED by the rank hosting it in
// pipeline 0: ALLREDUCE_GRAD gathers the K gradients on the owner, which sums them in
// replica-group rank order; STEP runs AdamW on the owner only and broadcasts the new
// parameters; non-owners hold no optimizer state (freed at the first segment) and only
// advance their version counter. Without it every replica sums all gradients in the
// same order and steps itself. Both give bit-identical parameters (the owner computes
// exactly what every replica computes otherwise). At every drain the runner checks
// that replicas are bit-identical (item 4) and, in owner mode, that each model stage's
// optimizer state exists on exactly one rank (item 5), and rank 0 writes the per-rank count to
// run_dir/optimizer_state.jsonl: one line per (rank, stage) {"rank", "stage",
// "model_stage", "params", "moment_floats" (state floats held)}, rewritten at each drain.
// schedule.amdp.step_slot = reference separates ALLREDUCE_GRAD from STEP: a
// non-owner's backwards in between are zeroed at STEP (dropped, recorded with
// applied -1 as versions_from_schedule derives it), an owner's are applied at it.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"
#include "common/status.h"
#include "data/loader.h"
#include "pipeline/action.h"
#include "pipeline/process_groups.h"
#include "pipeline/transport.h"
#include "pipeline/versions.h"

namespace pt {

// One optimizer step of the segment, as logged (valid on world rank 0).
struct AsyncStepLog {
  int64_t step = 0;        // 1-based, like the synchronous metrics
  double loss = 0;         // mean over the step's m·dp micro-batches
  double time_s = 0;       // run clock when the step's last loss was computed
  double lr = 0;
  double grad_norm = 0;    // sqrt of the summed per-stage squared norms of the step's update
  std::string versions;    // JSON: per stage max/mean drift and delay of the step's micro-batches
};

// A version record with run-global ids: microbatch = step·m + index, versions
// counted from the start of the run.
struct RunVersionRecord {
  int64_t microbatch = 0;
  int stage = 0;           // (virtual) stage
  int64_t forward = 0, backward = 0, applied = 0;
};

class AsyncRunner {
 public:
  AsyncRunner(const Config& config, const ProcessGroups& groups, const std::vector<int>& stage_to_rank, int chain);
  ~AsyncRunner();

  // Runs steps [first_step, first_step + lowered's updates) with `lowered`, the
  // lowered segment list. `clock_offset` = run seconds elapsed when the segment
  // starts. On world rank 0 fills `logs` and `records` (dp replica 0's record).
  Status run_segment(const Schedule& lowered, int64_t first_step, double clock_offset, TrainState* state,
                     const DataLoader& data, Transport* transport, std::vector<AsyncStepLog>* logs,
                     std::vector<RunVersionRecord>* records);

 private:
  void reduce_replicas(LocalStage& stage);
  void check_replicas_identical(const TrainState& state);
  // Owner mode: frees non-owners' optimizer state; checks and records where it lives.
  void release_non_owner_moments(TrainState* state) const;
  void check_and_record_optimizer_state(const TrainState& state) const;
  int owner_comm_rank(const LocalStage& stage) const;  // the owner's rank in replica_comm_
  bool owns(const LocalStage& stage) const { return stage_to_rank_[size_t(stage.stage % chain_)] == groups_.pp_rank; }
  const Config& config_;
  const ProcessGroups& groups_;
  std::vector<int> stage_to_rank_;
  int chain_;
  MPI_Comm replica_comm_ = MPI_COMM_NULL;  // ranks hosting the same model stages (AMDP)
  bool zero_owner_ = false;                 // replicas and schedule.amdp.zero_owner
  std::vector<int> replica_members_;        // pp ranks of replica_comm_, in its rank order
};

// JSON line for versions.jsonl.
std::string version_record_json(const RunVersionRecord& r);

}  // namespace pt
